"""Reading a context as a parsed list (mner.context with mner.entity_list): nothing readable is no context; an
unaligned list may be read as none; generic kinds may get their own tag; the text fallback (mner.fallback)."""

from __future__ import annotations

from mner.channels.context import ALIGN_TAGS, ANY_TAGS, NO_CONTEXT, alignment_ids
from mner.data import Post
from mner.runtime.runners import RoutedRunner

TOKENS = ["Bears", "win", "in", "Chicago"]
LISTED = "Named entities:1. Bears (sports team)2. Chicago (city)Reasoning: x"


def ids(*tags):
    return [1 + (ALIGN_TAGS + ANY_TAGS).index(t) for t in tags]


def test_every_format_reads_the_same():
    expected = ids("B-ORG", "O", "O", "B-LOC")
    for text in (
        LISTED,
        '[{"name": "Bears", "type": "sports team"}, {"name": "Chicago", "type": "city"}]',
        "Bears - sports team\nChicago - city",
        "Entities: Bears - sports team; Chicago - city",
    ):
        assert alignment_ids(TOKENS, text) == expected


def test_nothing_readable_is_no_context():
    for text in (None, "", "The Bears won in Chicago today.", "Named entities: None. Reasoning: x"):
        assert alignment_ids(TOKENS, text) == [NO_CONTEXT] * 4


def test_an_unaligned_list_may_be_read_as_no_context():
    other = "Named entities:1. Kobe (person)"
    assert alignment_ids(TOKENS, other) == ids("O", "O", "O", "O")
    assert alignment_ids(TOKENS, other, unaligned_as_none=True) == [NO_CONTEXT] * 4


def test_given_lists_replace_the_parsed_one():
    assert alignment_ids(TOKENS, LISTED, [("Chicago", "city")], given=True) == ids("O", "O", "O", "B-LOC")
    assert alignment_ids(TOKENS, LISTED, None, given=True) == [NO_CONTEXT] * 4
    assert alignment_ids(TOKENS, LISTED, [], given=True) == [NO_CONTEXT] * 4


def test_generic_kinds_get_their_own_tag():
    text = "Named entities:1. Bears (entity)2. Chicago (date)"
    assert alignment_ids(TOKENS, text) == ids("B-UNK", "O", "O", "B-UNK")
    assert alignment_ids(TOKENS, text, generic_tag=True) == ids("B-ANY", "O", "O", "B-UNK")


def test_prose_fallback_finds_the_posts_names():
    prose = "Reasoning: The sentence mentions the Bears and Chicago."
    assert alignment_ids(TOKENS, prose) == [NO_CONTEXT] * 4
    assert alignment_ids(TOKENS, prose, prose_fallback=True) == ids("B-UNK", "O", "O", "B-UNK")


class _Stub:
    """A runner that tags every token with one tag and remembers which posts it was given."""

    runtime, record, batches = "onnx", {}, None

    def __init__(self, tag, config=None):
        self.tag, self.config, self.seen = tag, config, []

    def predict_tags(self, posts, batch_size=64, images=None):
        self.seen.extend(p.id for p in posts)
        return [[self.tag] * len(p.tokens) for p in posts]


def test_fallback_gives_posts_without_an_aligned_name_to_the_text_model():
    from mner.config import ModelConfig

    config = ModelConfig(
        tags=["O"], words=[], chars=[], channels=["text", "context"], context={"alignment": True}
    )
    context_model, text_model = _Stub("B-PER", config), _Stub("B-LOC")
    posts = [
        Post(tuple(TOKENS), id="a", context=LISTED),
        Post(tuple(TOKENS), id="b", context="Named entities:1. Kobe (person)"),
        Post(tuple(TOKENS), id="c"),
    ]
    tags = RoutedRunner(context_model, text_model).predict_tags(posts)
    assert [t[0] for t in tags] == ["B-PER", "B-LOC", "B-LOC"]
    assert context_model.seen == ["a"] and text_model.seen == ["b", "c"]


def test_three_way_routing():
    from mner.config import ModelConfig

    config = ModelConfig(
        tags=["O"], words=[], chars=[], channels=["text", "context"], context={"alignment": True}
    )
    typed, untyped, text = _Stub("B-PER", config), _Stub("B-ORG"), _Stub("B-LOC")
    posts = [
        Post(tuple(TOKENS), id="a", context=LISTED),
        Post(tuple(TOKENS), id="b", context="Named entities:1. Bears (entity)2. Chicago (hashtag)"),
        Post(tuple(TOKENS), id="c", context="Named entities:1. Kobe (person)"),
    ]
    tags = RoutedRunner(typed, text, untyped).predict_tags(posts)
    assert [t[0] for t in tags] == ["B-PER", "B-ORG", "B-LOC"]


def test_kind_vectors_read_the_listed_kinds_words_and_export(tmp_path):
    """kind_vectors (issue #24): a token inside a listed entity gets the mean vector of its kind's words; the model
    trains, and its ONNX export gives PyTorch's emissions (export_model checks)."""
    import numpy as np

    from mner.channels.context import aligned_kinds
    from mner.runtime.export import export_model
    from mner.runtime.runners import load_runner
    from mner.training.runconfig import RunConfig, TrainConfig
    from mner.training.trainer import train

    assert aligned_kinds(("Bears", "win", "in", "Chicago"), LISTED) == ["sports team", None, None, "city"]
    posts = [
        Post(("Bears", "win", "in", "Chicago"), id="1", tags=("B-ORG", "O", "O", "B-LOC"), context=LISTED),
        Post(("flying", "to", "Chicago"), id="2", tags=("O", "O", "B-LOC")),
    ]
    model = {"char_dim": 8, "char_filters": 8, "hidden": 8, "channels": ["text", "context"]}
    model |= {"context": {"alignment": True, "kind_vectors": True}}
    run = RunConfig(model, TrainConfig(epochs=2, batch_size=2, min_word_count=1, progress=False))
    trained = train(posts, posts, run)[0]
    batch = trained.batches.build(posts)
    assert batch.text.kind_vectors.shape == (2, 4, 50)
    assert np.abs(batch.text.kind_vectors[0, 0]).sum() > 0 and not batch.text.kind_vectors[0, 1].any()
    assert not batch.text.kind_vectors[1].any()  # no context: no kind
    folder = trained.save(tmp_path / "m")
    export_model(trained, folder)
    assert load_runner(folder, "onnx").predict_tags(posts) == trained.predict_tags(posts)
    assert "Kind read as words" in (folder / "README.md").read_text(encoding="utf-8")
