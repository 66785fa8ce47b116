"""The paper's fusion equations, each against a direct computation, plus the masks' guarantees."""

import pytest
import torch

from mner.model.fusion import (
    FeatureWiseAlignment,
    Gate,
    GuidedVisualAttention,
    ModalityFusion,
    masked_feature_softmax,
)


def test_feature_softmax_normalises_each_feature_over_real_items_only():
    scores = torch.randn(2, 3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool).unsqueeze(1)
    p = masked_feature_softmax(scores, mask, dim=2)
    assert torch.allclose(p.sum(dim=2), torch.ones(2, 3, 4))
    assert torch.all(p[0, :, 3:] == 0)
    expected = torch.softmax(scores[0, 1, :3, 2], dim=0)  # one feature of one query, by hand
    assert torch.allclose(p[0, 1, :3, 2], expected)


def test_alignment_is_eq3_for_every_pair():
    align = FeatureWiseAlignment(6)
    q, w = torch.randn(1, 2, 6), torch.randn(1, 3, 6)
    out = align(q, w)
    assert out.shape == (1, 2, 3, 6)
    for t in range(2):
        for i in range(3):
            direct = align.w_t(torch.tanh(align.w_x(w[0, i]) + align.w_q(q[0, t])))
            assert torch.allclose(out[0, t, i], direct, atol=1e-6)


def test_visual_attention_is_eq7_to_9():
    att = GuidedVisualAttention(4)
    guide, regions = torch.randn(1, 1, 4), torch.randn(1, 5, 4)
    out = att(guide, regions)
    scores = torch.stack(
        [att.w_v(torch.tanh(att.w_s(guide[0, 0]) + att.w_i(regions[0, j]))) for j in range(5)]
    )
    expected = (torch.softmax(scores, dim=0) * regions[0]).sum(0)
    assert torch.allclose(out[0, 0], expected, atol=1e-6)


def test_gate_mixes_and_can_be_closed():
    gate = Gate(3)
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    g = torch.sigmoid(gate.w_1(a) + gate.w_2(b))
    assert torch.allclose(gate(a, b), g * a + (1 - g) * b)
    closed = gate(a, b, allow=torch.tensor([[False], [True]]))
    assert torch.equal(closed[0], b[0]) and torch.allclose(closed[1], (g * a + (1 - g) * b)[1])


@pytest.fixture()
def inputs():
    torch.manual_seed(1)
    x = torch.randn(3, 4, 8)
    memory = torch.randn(3, 6, 8)
    memory_mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    regions = torch.randn(3, 5, 8)
    return x, memory, memory_mask, regions


def test_posts_without_image_get_exactly_the_text_path(inputs):
    x, memory, memory_mask, regions = inputs
    fusion = ModalityFusion(8)
    has_image = torch.tensor([True, False, False])
    with_regions = fusion(x, memory, memory_mask, regions, has_image)
    without = fusion(x, memory, memory_mask)
    assert torch.allclose(with_regions[1:], without[1:], atol=1e-6)
    assert not torch.allclose(with_regions[0], without[0], atol=1e-4)
    # what the "missing" images hold does not matter at all
    noisy = regions.clone()
    noisy[1:] = torch.randn_like(noisy[1:]) * 100
    assert torch.equal(fusion(x, memory, memory_mask, noisy, has_image)[1:], with_regions[1:])


def test_padded_memory_items_are_ignored(inputs):
    x, memory, memory_mask, regions = inputs
    fusion = ModalityFusion(8)
    has_image = torch.tensor([True, True, False])
    out = fusion(x, memory, memory_mask, regions, has_image)
    changed = memory.clone()
    changed[~memory_mask] = 1e3
    assert torch.allclose(fusion(x, changed, memory_mask, regions, has_image), out, atol=1e-6)


def test_gradients_reach_the_image_when_there_is_one(inputs):
    x, memory, memory_mask, regions = inputs
    regions.requires_grad_(True)
    fusion = ModalityFusion(8)
    fusion(x, memory, memory_mask, regions, torch.tensor([True, False, True])).sum().backward()
    assert regions.grad[0].abs().sum() > 0 and regions.grad[2].abs().sum() > 0
    assert torch.all(regions.grad[1] == 0)


def test_regions_need_has_image(inputs):
    x, memory, memory_mask, regions = inputs
    with pytest.raises(ValueError, match=r"expected has_image \(B,\) with regions"):
        ModalityFusion(8)(x, memory, memory_mask, regions)


def test_narrow_fusion_keeps_the_query_width_and_the_masks(inputs):
    x, _, memory_mask, _ = inputs
    torch.manual_seed(2)
    memory, regions = torch.randn(3, 6, 4), torch.randn(3, 5, 4)  # memory and regions live in the inner width
    fusion = ModalityFusion(8, inner=4)
    has_image = torch.tensor([True, False, False])
    out = fusion(x, memory, memory_mask, regions, has_image)
    assert out.shape == (3, 4, 8)
    assert torch.allclose(out[1:], fusion(x, memory, memory_mask)[1:], atol=1e-6)
    # Eq. 12 in the inner width, then Eq. 13-14 against the full-width query
    q = fusion.query_down(x)
    p = masked_feature_softmax(fusion.align(q, memory), memory_mask.unsqueeze(1), dim=2)
    context = fusion.context_up((p * memory.unsqueeze(1)).sum(2))
    assert torch.allclose(out[1:], fusion.output_gate(context, x)[1:], atol=1e-6)
