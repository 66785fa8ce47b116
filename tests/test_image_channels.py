"""The image path on real pixels: the same sentence is PER with the astronaut photo and OTHER with the
cat photo. Models with image regions, or with image attributes, learn it; the text-only model cannot."""

import numpy as np
import pytest
import torch

from mner.config import ModelConfig
from mner.data import Post
from mner.model.torch_model import load_torch_model
from mner.training.runconfig import RunConfig, TrainConfig
from mner.training.trainer import train

skimage_data = pytest.importorskip("skimage.data")

SMALL = {"hidden": 24, "char_dim": 8, "char_filters": 8, "dropout": 0.0, "fusion": True}


@pytest.fixture(scope="module")
def images():
    from PIL import Image

    from mner.vision import load_encoder

    encoder = load_encoder("lite0")
    photos = {"astronaut": skimage_data.astronaut(), "chelsea": skimage_data.chelsea()}
    features = {}
    for name, pixels in photos.items():
        image = Image.fromarray(pixels)
        w, h = image.size
        features[f"{name}-full"] = encoder.encode_image(image)
        features[f"{name}-crop"] = encoder.encode_image(image.crop((w // 10, h // 10, w, h)))
    return features


def posts():
    out = []
    for image_id in ("astronaut-full", "astronaut-crop", "chelsea-full", "chelsea-crop"):
        tag = "B-PER" if image_id.startswith("astronaut") else "B-OTHER"
        out.append(Post(("Chelsea", "is", "sleeping"), id=image_id, tags=(tag, "O", "O"), image=image_id))
    return out


_FITTED: dict = {}


def fit(channels, images):
    """Train once per channel set in this module (4 posts, 80 epochs)."""
    if tuple(channels) in _FITTED:
        return _FITTED[tuple(channels)]
    torch.manual_seed(0)
    run = RunConfig(
        {**SMALL, "channels": channels},
        TrainConfig(epochs=80, lr=0.02, batch_size=4, patience=80, min_word_count=1, progress=False, seed=2),
    )
    _FITTED[tuple(channels)] = train(posts(), posts(), run, images=images)[0]
    return _FITTED[tuple(channels)]


@pytest.mark.parametrize("channels", [["text", "image"], ["text", "attributes"]])
def test_image_channel_learns_the_type_from_pixels(images, channels):
    tagger = fit(channels, images)
    assert tagger.predict_tags(posts(), images=images) == [list(p.tags) for p in posts()]


def test_text_only_cannot(images):
    tagger = fit(["text"], images)
    predicted = tagger.predict_tags(posts(), images=images)
    assert sum(p == list(g.tags) for p, g in zip(predicted, posts())) == 2


def test_missing_image_is_a_mask_not_a_zero_image(images, tmp_path):
    tagger = fit(["text", "image", "attributes"], images)
    no_image = [Post(("Chelsea", "is", "sleeping"), image="not-there")]
    batch = tagger.batch(no_image, images=images)
    assert not bool(batch.image.has_image[0])
    assert len(tagger.predict_tags(no_image, images=images)[0]) == 3
    tagger.save(tmp_path / "m")
    loaded = load_torch_model(tmp_path / "m")
    assert loaded.predict_tags(posts(), images=images) == tagger.predict_tags(posts(), images=images)


def test_wrong_region_width_is_a_clear_error(images):
    tagger = fit(["text", "image"], images)
    bad = {
        k: type(v)(**{**vars(v), "regions": np.zeros((49, 7), dtype=np.float32)}) for k, v in images.items()
    }
    with pytest.raises(ValueError, match=r"image 'astronaut-full': expected 1280-d regions \(lite0\), got 7"):
        tagger.predict_tags(posts()[:1], images=bad)


def test_image_channels_need_fusion():
    with pytest.raises(ValueError, match=r"channel\(s\) \['image'\] need fusion = true"):
        ModelConfig(tags=[], words=[], chars=[], channels=["text", "image"])


def test_cli_trains_evaluates_and_predicts_with_an_image_cache(tmp_path):
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from mner.cli import app

    runner = CliRunner()
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(folder / "astro.jpg")
    Image.fromarray(skimage_data.chelsea()).save(folder / "cat.jpg")
    extracted = runner.invoke(
        app, ["images", "extract", "--images", str(folder), "--out", str(tmp_path / "f.sqlite")]
    )
    assert extracted.exit_code == 0, extracted.output
    (tmp_path / "d.txt").write_text(
        "IMGID:astro\nChelsea\tB-PER\nis\tO\nsleeping\tO\n\nIMGID:cat\nChelsea\tB-OTHER\nis\tO\nsleeping\tO\n"
    )
    (tmp_path / "m.toml").write_text(
        '[model]\nchannels = ["text", "image"]\nfusion = true\nhidden = 24\n'
        "dropout = 0.0\n[train]\nepochs = 60\nlr = 0.02\nbatch_size = 2\n"
        "min_word_count = 1\nprogress = false\npatience = 60\n"
    )
    args = [
        "train",
        "--train",
        str(tmp_path / "d.txt"),
        "--dev",
        str(tmp_path / "d.txt"),
        "--out",
        str(tmp_path / "m"),
        "--config",
        str(tmp_path / "m.toml"),
    ]
    missing = runner.invoke(app, args)
    assert missing.exit_code == 2
    assert "error: the model config enables the 'image' channel: pass --images-cache FILE" in missing.stderr
    trained = runner.invoke(app, [*args, "--images-cache", str(tmp_path / "f.sqlite")])
    assert trained.exit_code == 0, trained.output
    scored = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(tmp_path / "m"),
            "--data",
            str(tmp_path / "d.txt"),
            "--images-cache",
            str(tmp_path / "f.sqlite"),
            "--json",
        ],
    )
    assert scored.exit_code == 0 and json.loads(scored.stdout)["f1"] == 100.0
    for photo, expected in (("cat.jpg", "OTHER"), ("astro.jpg", "PER")):
        one = runner.invoke(
            app,
            [
                "predict",
                "--model",
                str(tmp_path / "m"),
                "--text",
                "Chelsea is sleeping",
                "--image",
                str(folder / photo),
                "--json",
            ],
        )
        assert one.exit_code == 0, one.output
        assert json.loads(one.stdout)["entities"][0]["type"] == expected
    lite2 = runner.invoke(
        app,
        [
            "images",
            "extract",
            "--images",
            str(folder),
            "--out",
            str(tmp_path / "l2.sqlite"),
            "--backbone",
            "lite2",
        ],
    )
    assert lite2.exit_code == 0
    wrong = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(tmp_path / "m"),
            "--data",
            str(tmp_path / "d.txt"),
            "--images-cache",
            str(tmp_path / "l2.sqlite"),
        ],
    )
    assert wrong.exit_code == 2
    assert "feature cache made with backbone 'lite2', expected 'lite0'" in wrong.stderr
