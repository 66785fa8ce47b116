"""Using a model on raw posts: the Pipeline, ``mner predict`` and ``mner tag``, on real photos (scikit-image)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import regex

pytest.importorskip("efficientnet_lite_pytorch")
skdata = pytest.importorskip("skimage.data")
from PIL import Image
from typer.testing import CliRunner

from mner.channels.sources import ChannelSources, attribute_caption, knowledge_words
from mner.cli import app
from mner.config import ModelConfig
from mner.data import MnerInputError, Post, tokenize
from mner.knowledge import KGSources, SqliteKG, build_kg, post_knowledge
from mner.model.folder import DEFAULT_MODEL
from mner.model.torch_model import TorchModel
from mner.serving.pipeline import Pipeline, PostInput
from mner.serving.result import TagResult
from mner.vision import EncoderConfig, ImageError
from mner.vision.decode import load_pixels, pixels_from_bytes
from tests.images import png_header

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL / "model.safetensors").is_file(), reason="no shipped model in the package"
)

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
KEYS = ["tokens", "entities", "attributes", "knowledge", "caption", "context", "warnings"]
LABELS = """\
cat	Chelsea	the cat in the scikit-image photo	Chelsea the cat
cfc	Chelsea F.C.	association football club based in London	Chelsea
london	London	capital city of England
"""
TRIPLES = "cfc\t/sports/sports_team/location\tlondon\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Good and bad image files by name."""
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skdata.chelsea()).save(folder / "chelsea.jpg", quality=90)
    Image.fromarray(skdata.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(skdata.astronaut()).save(folder / "astronaut.png")
    whole = (folder / "chelsea.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "text.jpg").write_bytes(b"hello\n")
    png_header(folder / "bomb.png", 10_000, 10_000)
    return {p.stem: p for p in folder.iterdir()}


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline()


@pytest.fixture(scope="module")
def reading():
    """The default, asked for every image's classes: it reads every image (the default alone reads none)."""
    return Pipeline(attributes=True)


@pytest.fixture(scope="module")
def kg_path(tmp_path_factory, pipeline, photos) -> Path:
    """Two entities called Chelsea: the cat owns the cat photo (PNG; posts show it as JPEG); the club does not."""
    folder = tmp_path_factory.mktemp("kg")
    (folder / "labels.tsv").write_text(LABELS, encoding="utf-8")
    (folder / "triples.tsv").write_text(TRIPLES, encoding="utf-8")
    build_kg(folder / "kg.sqlite", KGSources(labels=[folder / "labels.tsv"], tsv=[folder / "triples.tsv"]))
    with SqliteKG(folder / "kg.sqlite", writable=True) as kg:
        vector = pipeline.encoder.encode_file(photos["chelsea"].with_suffix(".png")).vector
        kg.add_image_vectors(kg.find_entity("cat").id, vector, source="chelsea", encoder="lite0")
        kg.commit()
    return folder / "kg.sqlite"


# -------------------------------------------------------------------------------------- the Pipeline


def scored(entities: list[dict]) -> list[dict]:
    """The entities without their scores, each checked to be a probability."""
    assert all(0.0 < e["score"] <= 1.0 for e in entities), entities
    return [{k: v for k, v in e.items() if k != "score"} for e in entities]


def test_result_contract_without_image(pipeline):
    result = pipeline.tag("Barack Obama visits Paris").to_dict()
    assert list(result) == KEYS
    result["entities"] = scored(result["entities"])
    assert result == {
        "tokens": ["Barack", "Obama", "visits", "Paris"],
        "entities": [
            {"start": 0, "end": 2, "type": "PER", "text": "Barack Obama", "start_char": 0, "end_char": 12},
            {"start": 3, "end": 4, "type": "LOC", "text": "Paris", "start_char": 20, "end_char": 25},
        ],
        "attributes": [],
        "knowledge": None,
        "caption": None,
        "context": None,
        "warnings": [],
    }
    assert list(pipeline.tag("Paris", post_id="p1").to_dict()) == ["id", *KEYS]
    assert pipeline.describe() == {
        "model": "default",
        "channels": ["text", "context"],
        "files": {},
        "image_backbone": "lite0",
        "runtime": "onnx",
        "threads": 1,
        "min_score": 0.0,
        "images": "not read: the model reads no image (a post asking for attributes has its image read)",
        "warnings": [
            (
                "the model was trained with 'context', and no context file is given (--context-file): a post without "
                "its own is "
                "tagged without it"
            )
        ],
    }


def test_image_gives_its_top5_attributes_as_file_or_bytes(reading, photos):
    from_file = reading.tag("Chelsea is sleeping", image=photos["chelsea"]).to_dict()
    attributes = from_file["attributes"]
    assert len(attributes) == 5 and attributes[0]["label"] in CAT_CLASSES
    assert all(a["probability"] == round(a["probability"], 4) for a in attributes)
    assert attributes == sorted(attributes, key=lambda a: -a["probability"])
    assert from_file["caption"] is None  # the shipped model has no caption channel
    assert reading.tag("Chelsea is sleeping", image=photos["chelsea"].read_bytes()).to_dict() == from_file


def test_a_batch_encodes_its_images_in_one_call_and_bad_items_stay_in_place(reading, photos, monkeypatch):
    pipeline = reading
    items = [
        PostInput("Kobe Bryant scores", image=photos["chelsea"], post_id="a"),
        PostInput("   ", post_id="b"),
        PostInput("New York at night", image=photos["text"], post_id="c"),
        PostInput("Paris in spring", image=photos["astronaut"].read_bytes(), post_id="d"),
        PostInput("no image here", post_id="e"),
    ]
    one_by_one = [pipeline.tag_many([item])[0] for item in items]
    calls = []
    encode = pipeline.encoder.encode_pixels
    monkeypatch.setattr(
        pipeline.encoder, "encode_pixels", lambda pixels: calls.append(len(pixels)) or encode(pixels)
    )
    batched = pipeline.tag_many(items)
    assert calls == [2]
    assert [str(r) for r in batched if isinstance(r, MnerInputError)] == [
        "text is empty: expected the words of a post",
        "text.jpg: not an image (unrecognised format)",
    ]
    assert isinstance(batched[2], ImageError)
    assert [r.id for r in batched if isinstance(r, TagResult)] == ["a", "d", "e"]
    for got, alone in zip(batched, one_by_one, strict=True):
        if isinstance(got, TagResult):
            got, alone = got.to_dict(), alone.to_dict()
            assert got["entities"] == alone["entities"]
            assert [a["label"] for a in got["attributes"]] == [a["label"] for a in alone["attributes"]]
            assert [a["probability"] for a in got["attributes"]] == pytest.approx(
                [a["probability"] for a in alone["attributes"]], abs=1e-3
            )
        else:
            assert str(got) == str(alone)


def test_posts_prepared_on_other_threads_are_tagged_as_by_tag_many(reading, photos):
    """The service prepares posts (tokens, decoded pixels) on decoding threads, then tags them in a batch."""
    pipeline = reading
    items = [
        PostInput("Kobe Bryant scores", image=photos["chelsea"], post_id="a"),
        PostInput("   ", post_id="b"),
        PostInput("New York at night", image=photos["text"], post_id="c"),
        PostInput("Paris in spring", image=photos["astronaut"].read_bytes(), post_id="d"),
    ]
    with ThreadPoolExecutor(2) as pool:
        prepared = list(pool.map(pipeline.prepare, items))
    assert [type(p).__name__ for p in prepared] == ["Prepared", "MnerInputError", "ImageError", "Prepared"]
    got = pipeline.tag_prepared(prepared)
    want = pipeline.tag_many(items)
    assert [r.to_dict() if isinstance(r, TagResult) else str(r) for r in got] == [
        r.to_dict() if isinstance(r, TagResult) else str(r) for r in want
    ]


def test_the_default_opens_no_image_unless_its_classes_are_asked_for(photos, monkeypatch):
    """The shipped default reads no image channel: an image is neither decoded nor encoded (a file that is not an
    image fails nothing, its ``attributes`` null), unless the post or the Pipeline asks for attributes."""
    import mner.runtime.images
    import mner.vision.decode

    loaded, decoded = [], []
    load_encoder, load_pixels_ = mner.runtime.images.load_image_encoder, mner.vision.decode.load_pixels
    monkeypatch.setattr(
        mner.runtime.images, "load_image_encoder", lambda *a: loaded.append(a) or load_encoder(*a)
    )
    monkeypatch.setattr(mner.vision.decode, "load_pixels", lambda *a: decoded.append(a) or load_pixels_(*a))
    default = Pipeline()
    assert default.image_readers == [] and not default.reads_image()
    items = [
        PostInput("Barack Obama visits Paris", image=photos["text"], post_id="a"),
        PostInput("Kobe Bryant scores", image=photos["chelsea"].with_name("absent.jpg"), post_id="b"),
        PostInput("Chelsea is sleeping", image=b"not an image", post_id="c"),
        PostInput("flying to Paris", post_id="d"),
    ]
    results = [r.to_dict() for r in default.tag_many(items)]
    assert [[e["text"] for e in r["entities"]] for r in results] == [
        ["Barack Obama", "Paris"],
        ["Kobe Bryant"],
        ["Chelsea"],
        ["Paris"],
    ]
    assert [r["attributes"] for r in results] == [None, None, None, []]  # null: not read; []: no image
    assert (loaded, decoded, default._encoder) == ([], [], None)
    # asked for by a post: that post's image is read, in the same batch as the others
    asked = default.tag_many(
        [*items[:2], PostInput("Chelsea is sleeping", image=photos["chelsea"], attributes=True)]
    )
    assert [r.attributes for r in asked[:2]] == [None, None]
    assert asked[2].attributes[0].label in CAT_CLASSES and len(asked[2].attributes) == 5
    assert len(loaded) == 1 and len(decoded) == 1
    # asked for by the Pipeline: every image is read, and one that is not an image is the post's error
    every = Pipeline(attributes=True).tag_many(items)
    assert [str(r) if isinstance(r, ImageError) else r.attributes for r in every] == [
        "text.jpg: not an image (unrecognised format)",
        "absent.jpg: file not found",
        "<upload>: not an image (unrecognised format)",
        (),
    ]


def test_a_model_that_reads_the_image_reads_it_without_being_asked(caption_model, kg_path, tmp_path):
    """A caption made from the attribute labels, or knowledge matched in a KG by the image, reads the image."""
    assert Pipeline(caption_model).image_readers == ["caption"]
    config = ModelConfig(
        tags=["O", "B-PER", "I-PER"],
        words=["<pad>", "<unk>"],
        chars=["<pad>", "<unk>"],
        channels=["text", "knowledge"],
        fusion=True,
        hidden=8,
    )
    knows = TorchModel.new(config).save(tmp_path / "knows")
    assert Pipeline(knows).image_readers == []  # no KG: nothing to match the image against
    with_kg = Pipeline(knows, {"knowledge": kg_path})
    assert with_kg.image_readers == ["knowledge"] and with_kg.reads_image()
    assert with_kg.describe()["images"] == "read: the model reads 'knowledge'"
    with_kg.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": ""}, "text is empty: expected the words of a post"),
        ({"text": "  \n\t "}, "text is empty: expected the words of a post"),
        ({"image": "text"}, "text.jpg: not an image (unrecognised format)"),
        ({"image": "truncated"}, "truncated.jpg: truncated image data"),
        (
            {"image": "bomb"},
            (
                "bomb.png: image is 10000×10000 (100,000,000 pixels), over the 89,478,485-pixel limit "
                "(decompression bomb); not decoded"
            ),
        ),
        ({"image": "absent"}, "absent.jpg: file not found"),
        ({"image": b""}, "<upload>: empty file (0 bytes)"),
        ({"image": b"hello\n"}, "<upload>: not an image (unrecognised format)"),
    ],
)
def test_bad_input_is_one_clear_error(reading, photos, kwargs, message):
    pipeline = reading
    image = kwargs.get("image")
    if isinstance(image, str):
        image = photos.get(image, photos["chelsea"].with_name("absent.jpg"))
    with pytest.raises(MnerInputError) as err:
        pipeline.tag(kwargs.get("text", "Kobe Bryant scores"), image=image).to_dict()
    assert str(err.value) == message


def test_a_100000_character_post_is_tagged_in_windows(pipeline):
    text = ("the weather is nice today and we walk " * 2700)[:99_950] + " Barack Obama visits Paris"
    assert len(text) == 99_976
    result = pipeline.tag(text).to_dict()
    assert len(result["tokens"]) == len(tokenize(text)) > 20 * 200  # far over the model's 200-token window
    assert scored(result["entities"][-2:]) == [
        {
            "start": len(result["tokens"]) - 4,
            "end": len(result["tokens"]) - 2,
            "type": "PER",
            "text": "Barack Obama",
            "start_char": 99_951,
            "end_char": 99_963,
        },
        {
            "start": len(result["tokens"]) - 1,
            "end": len(result["tokens"]),
            "type": "LOC",
            "text": "Paris",
            "start_char": 99_971,
            "end_char": 99_976,
        },
    ]


def test_the_image_vector_drives_the_knowledge_search(kg_path, photos):
    with_kg = Pipeline(files={"knowledge": kg_path})
    # the default reads no knowledge: its image is read (and matched in the KG) when attributes are asked for
    seen = with_kg.tag("Chelsea is sleeping", image=photos["chelsea"], attributes=True).to_dict()["knowledge"]
    assert (seen["path"], seen["entity"], seen["hop"]) == ("image", "cat", 0) and seen["similarity"] >= 0.9
    unread = with_kg.tag("Chelsea is sleeping", image=photos["chelsea"]).to_dict()
    assert unread["attributes"] is None and unread["knowledge"]["entity"] == "cfc"  # the text match
    assert seen["triples"][0] == ["chelsea", "isA", "cat"]
    assert (
        with_kg.tag("Chelsea is sleeping").to_dict()["knowledge"]["entity"] == "cfc"
    )  # text fallback: the club
    assert with_kg.describe()["files"] == {"knowledge": str(kg_path)}
    with_kg.close()


def test_channels_get_what_training_gave_them(kg_path, photos, tmp_path, monkeypatch):
    """Caption from the attributes, knowledge words as training makes them, image features by key."""
    config = ModelConfig(
        tags=["O", "B-PER", "I-PER"],
        words=["<pad>", "<unk>"],
        chars=["<pad>", "<unk>"],
        channels=["text", "caption", "knowledge", "attributes", "image"],
        fusion=True,
        hidden=8,
    )
    TorchModel.new(config).save(tmp_path / "untrained")
    assert Pipeline(tmp_path / "untrained").tag("Chelsea is sleeping").knowledge is None  # no KG: masked
    full = Pipeline(tmp_path / "untrained", {"knowledge": kg_path})
    seen = {}
    monkeypatch.setattr(
        full.runner,
        "predict",
        lambda posts, images=None: seen.update(posts=posts, images=images) or [[] for _ in posts],
    )
    results = [
        r.to_dict()
        for r in full.tag_many(
            [
                PostInput("Chelsea is sleeping", image=photos["chelsea"]),
                PostInput("Chelsea is sleeping", caption="my own caption"),
            ]
        )
    ]
    features = full.encoder.encode_file(photos["chelsea"])
    with_image, without = seen["posts"]
    assert with_image.caption == attribute_caption(features.attributes) == results[0]["caption"]
    assert with_image.caption == " ".join(a["label"] for a in results[0]["attributes"])
    passed = seen["images"][with_image.image]
    assert [label for label, _ in passed.attributes] == [label for label, _ in features.attributes]
    assert (passed.regions == features.regions).all() and (passed.vector == features.vector).all()
    assert with_image.knowledge == knowledge_words(
        post_knowledge(full.kg, with_image.tokens, features.vector)
    )
    assert "cat" in with_image.knowledge
    assert (without.image, without.caption, results[1]["caption"]) == (
        None,
        "my own caption",
        "my own caption",
    )
    assert without.knowledge == ChannelSources(kg=full.kg).fill([Post(without.tokens)]).posts[0].knowledge


def test_training_and_tagging_fill_the_same_channels_for_a_post(kg_path, photos, tmp_path, monkeypatch):
    """One post, its photo in a feature cache (how train and evaluate read images) and as a file (how predict,
    tag and serve do): the KG's image search, the caption made from the attributes and the features agree."""
    import shutil

    from mner.vision import extract_folder

    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(photos["chelsea"], folder / "p1.jpg")
    extract_folder(folder, tmp_path / "features.sqlite", EncoderConfig())
    channels = ["text", "caption", "knowledge", "attributes", "image"]
    sources = ChannelSources.open(
        {"knowledge": kg_path, "image": tmp_path / "features.sqlite"}, backbone="lite0"
    )
    train_time = sources.fill([Post(("Chelsea", "is", "sleeping"), id="p1", image="p1")], channels)
    config = ModelConfig(
        tags=["O", "B-PER", "I-PER"],
        words=["<pad>", "<unk>"],
        chars=["<pad>", "<unk>"],
        channels=channels,
        fusion=True,
        hidden=8,
    )
    pipeline = Pipeline(TorchModel.new(config).save(tmp_path / "untrained"), {"knowledge": kg_path})
    seen = {}
    monkeypatch.setattr(
        pipeline.runner,
        "predict",
        lambda posts, images=None: seen.update(posts=posts, images=images) or [[] for _ in posts],
    )
    tag_time = pipeline.tag("Chelsea is sleeping", image=folder / "p1.jpg")
    assert train_time.knowledge[0].path == tag_time.knowledge.path == "image"
    assert train_time.knowledge[0].to_dict() == tag_time.knowledge.to_dict()
    trained_post, tagged_post = train_time.posts[0], seen["posts"][0]
    assert trained_post.knowledge == tagged_post.knowledge and "cat" in trained_post.knowledge
    assert trained_post.caption == tagged_post.caption == tag_time.caption
    cached, computed = train_time.images.get(trained_post.image), seen["images"][tagged_post.image]
    assert [label for label, _ in cached.attributes] == [label for label, _ in computed.attributes]
    assert [p for _, p in cached.attributes] == pytest.approx([p for _, p in computed.attributes], abs=1e-5)
    # the cache was made on PyTorch, the Pipeline encodes on ONNX Runtime: equal to float noise
    assert np.allclose(cached.regions, computed.regions, atol=1e-4)
    assert np.allclose(cached.vector, computed.vector, atol=1e-4)
    assert (
        train_time.report.summary()
        == "1 posts, 1 with a caption, 1 with knowledge, 1 with image features (0 without)"
    )
    sources.close()
    pipeline.close()


@pytest.fixture(scope="module")
def caption_model(tmp_path_factory, pipeline, photos) -> Path:
    """A tiny model that types "Chelsea" from the caption alone: PER with the astronaut's attribute words,
    OTHER with the cat's (trained on the attribute captions of the same files)."""
    import torch

    from mner.training.runconfig import RunConfig, TrainConfig
    from mner.training.trainer import train

    captions = {
        name: attribute_caption(pipeline.encoder.encode_file(photos[name]).attributes)
        for name in ("chelsea", "astronaut")
    }
    posts = [
        Post(
            ("Chelsea", "is", "sleeping"),
            id=f"{name}{i}",
            caption=captions[name],
            tags=("B-OTHER" if name == "chelsea" else "B-PER", "O", "O"),
        )
        for name in captions
        for i in range(2)
    ]
    torch.manual_seed(0)
    run = RunConfig(
        {
            "hidden": 24,
            "char_dim": 8,
            "char_filters": 8,
            "dropout": 0.0,
            "channels": ["text", "caption"],
            "fusion": True,
            "caption_mode": "attribute",
        },
        TrainConfig(epochs=60, lr=0.02, batch_size=4, patience=60, min_word_count=1, progress=False, seed=2),
    )
    tagger = train(posts, posts, run)[0]
    assert tagger.predict_tags(posts) == [list(p.tags) for p in posts]
    return tagger.save(tmp_path_factory.mktemp("caption") / "model")


def test_caption_channel_is_filled_from_the_image_attributes(caption_model, photos):
    captioned = Pipeline(caption_model)
    cat = captioned.tag("Chelsea is sleeping", image=photos["chelsea"]).to_dict()
    person = captioned.tag("Chelsea is sleeping", image=photos["astronaut"]).to_dict()
    assert cat["caption"] == " ".join(a["label"] for a in cat["attributes"])
    assert [e["type"] for e in cat["entities"]] == ["OTHER"]
    assert [e["type"] for e in person["entities"]] == ["PER"]
    given = captioned.tag("Chelsea is sleeping", image=photos["chelsea"], caption=person["caption"]).to_dict()
    assert given["caption"] == person["caption"] and [e["type"] for e in given["entities"]] == ["PER"]
    assert captioned.tag("Chelsea is sleeping").to_dict()["caption"] is None


# -------------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", ["chelsea", "astronaut"])
def test_bytes_decode_like_the_file(photos, name):
    path = photos[name]
    config = EncoderConfig()
    assert (pixels_from_bytes(path.read_bytes(), config) == load_pixels(path, config)).all()


@pytest.mark.parametrize("name", ["text", "truncated", "bomb"])
def test_bad_bytes_give_the_file_message_under_their_name(photos, name, monkeypatch):
    from PIL import ImageFile

    if name == "bomb":
        monkeypatch.setattr(
            ImageFile.ImageFile, "load", lambda self: pytest.fail("a bomb must not be decoded")
        )
    with pytest.raises(ImageError) as from_file:
        load_pixels(photos[name], EncoderConfig())
    with pytest.raises(ImageError) as from_bytes:
        pixels_from_bytes(photos[name].read_bytes(), EncoderConfig(), name="post-7")
    assert str(from_bytes.value) == str(from_file.value).replace(photos[name].name, "post-7")
    assert from_bytes.value.path == "post-7"


def test_max_pixels_applies_to_bytes(photos):
    with pytest.raises(
        ImageError,
        match=r"^<upload>: image is 451×300 \(135,300 pixels\), over the 10,000-pixel "
        r"limit \(decompression bomb\); not decoded$",
    ):
        pixels_from_bytes(photos["chelsea"].read_bytes(), EncoderConfig(max_pixels=10_000))


# ----------------------------------------------------------------------------------------- mner predict


def test_predict_shows_attributes_and_knowledge(kg_path, photos):
    result = runner.invoke(
        app,
        [
            *("predict", "--text", "Chelsea is sleeping", "--image", str(photos["chelsea"])),
            *("--kg", str(kg_path), "--attributes"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[Chelsea ") and lines[0].endswith(" is sleeping")
    attributes = next(line for line in lines if line.startswith("attributes: "))
    assert attributes.split(": ")[1].split(", ")[0].rsplit(" ", 1)[0] in CAT_CLASSES
    knowledge = next(line for line in lines if line.startswith("knowledge ("))
    assert knowledge.startswith("knowledge (image match, hop 0, similarity 0.")
    assert knowledge.endswith("): Chelsea (cat): chelsea isA cat")
    assert "\x1b[" not in result.stdout


def test_predict_json_is_the_pipeline_result(kg_path, photos, reading):
    result = runner.invoke(
        app,
        [
            "predict",
            "--text",
            "Chelsea is sleeping",
            "--image",
            str(photos["chelsea"]),
            "--kg",
            str(kg_path),
            "--context",
            "Chelsea the cat",
            "--json",
            "--attributes",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    # the default reads the context: how it read it comes last ("Chelsea the cat": the name Chelsea, of a kind
    # that names no type of the model's: the untyped path)
    assert list(out) == [*KEYS, "read_as"] and out["read_as"]["route"] == "untyped"
    assert [(e["name"], e["kind"], e["type"]) for e in out["read_as"]["entities"]] == [
        ("Chelsea", "cat", None)
    ]
    assert out["knowledge"]["entity"] == "cat" and out["context"] == "Chelsea the cat"
    assert (
        out["attributes"]
        == reading.tag("Chelsea is sleeping", image=photos["chelsea"]).to_dict()["attributes"]
    )


def test_predict_without_image_or_kg_prints_no_context_lines():
    result = runner.invoke(app, ["predict", "--text", "flying to Paris"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "flying to [Paris LOC]"
    assert regex.fullmatch(r"  LOC    Paris  \(score 0\.\d\d; tokens 2–3, characters 10–15\)", lines[1]), (
        lines
    )
    assert len(lines) == 2
    coloured = runner.invoke(app, ["predict", "--text", "flying to Paris"], color=True)
    assert "\x1b[" in coloured.stdout  # on a terminal the entity is coloured


def test_predict_piped_has_no_colour_codes():
    code = "from mner.cli import main; main()"
    out = subprocess.run(
        [sys.executable, "-c", code, "predict", "--text", "flying to Paris"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout
    assert out.splitlines()[0] == "flying to [Paris LOC]"


@pytest.mark.parametrize(
    "image, message",
    [
        ("text", "error: PHOTO: not an image (unrecognised format)"),
        ("truncated", "error: PHOTO: truncated image data"),
        (
            "bomb",
            "error: PHOTO: image is 10000×10000 (100,000,000 pixels), over the 89,478,485-pixel limit",
        ),
    ],
)
def test_predict_bad_image_is_one_clear_line(photos, image, message):
    args = ["predict", "--text", "Kobe Bryant scores", "--image", str(photos[image])]
    result = runner.invoke(app, [*args, "--attributes"])
    assert result.exit_code == 2
    assert result.stderr.startswith(message.replace("PHOTO", str(photos[image])))
    assert "Traceback" not in result.output


# -------------------------------------------------------------------------------------------- mner tag


def write_posts(folder: Path, lines: list) -> Path:
    path = folder / "posts.jsonl"
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
        encoding="utf-8",
    )
    return path


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tag(*args: str):
    return runner.invoke(app, ["tag", *args])


def test_tag_ids_relative_images_and_bad_lines(photos, tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "cat.jpg").write_bytes(photos["chelsea"].read_bytes())
    (tmp_path / "img" / "broken.jpg").write_bytes(photos["truncated"].read_bytes())
    posts = write_posts(
        tmp_path,
        [
            {"id": "a", "text": "Barack Obama visits Paris", "image": "img/cat.jpg"},
            {"text": "flying to Paris"},
            "{not json",
            {"id": "d", "caption": "no text"},
            {"id": "e", "text": "Kobe Bryant scores", "image": "img/broken.jpg"},
            {"tokens": ["New", "York"]},
        ],
    )
    out = str(tmp_path / "out.jsonl")
    result = tag("--in", str(posts), "--out", out, "--batch-size", "4", "--attributes")
    assert result.exit_code == 0, result.output
    records = read_records(tmp_path / "out.jsonl")
    assert [r["id"] for r in records] == ["a", "posts-2", "posts-3", "d", "e", "posts-6"]
    assert records[0]["attributes"][0]["label"] in CAT_CLASSES
    assert scored(records[1]["entities"]) == [
        {"start": 2, "end": 3, "type": "LOC", "text": "Paris", "start_char": 10, "end_char": 15}
    ]
    assert records[5]["entities"][0]["start_char"] is None  # a post given as tokens has no characters
    assert records[5]["tokens"] == ["New", "York"]
    assert records[2:5] == [
        {
            "id": "posts-3",
            "line": 3,
            "error": f"{posts}:3: not JSON (Expecting property name enclosed in double quotes at column 2)",
        },
        {
            "id": "d",
            "line": 4,
            "error": f"{posts}:4: expected 'text' (a string) or 'tokens' (a list of strings)",
        },
        # the image named by its path, not its base name (issue #25, case 21)
        {
            "id": "e",
            "line": 5,
            "error": f"{posts}:5: {tmp_path / 'img' / 'broken.jpg'}: truncated image data",
        },
    ]
    assert "tagged 3, errors 3, skipped 0 (already in the output); " in result.stderr


def test_tag_prepares_the_next_batch_while_tagging_and_writes_what_one_batch_writes(photos, tmp_path):
    """Batches of 2 (each prepared while the one before is tagged) give the records of one batch of all."""
    (tmp_path / "img").mkdir()
    names = ("chelsea", "astronaut", "truncated", "text")  # two photos, two bad images
    for name in names:
        (tmp_path / "img" / photos[name].name).write_bytes(photos[name].read_bytes())
    texts = ("Barack Obama visits Paris", "Kobe Bryant scores in Los Angeles", "Google opens in London")
    lines = [
        {
            "id": f"p{i}",
            "text": texts[i % 3],
            **({"image": f"img/{photos[names[i % 4]].name}"} if i % 3 else {}),
        }
        for i in range(11)
    ]
    lines[4] = "{broken"
    posts = write_posts(tmp_path, lines)
    for size, out in (("2", "small.jsonl"), ("64", "whole.jsonl")):
        result = tag("--in", str(posts), "--out", str(tmp_path / out), "--batch-size", size, "--attributes")
        assert result.exit_code == 0
    small, whole = read_records(tmp_path / "small.jsonl"), read_records(tmp_path / "whole.jsonl")
    assert [r["id"] for r in small] == [f"p{i}" if i != 4 else "posts-5" for i in range(11)]
    assert sum("error" in r for r in small) == 4 and sum("attributes" in r for r in small) >= 3
    for a, b in zip(small, whole, strict=True):
        assert a.get("entities") == b.get("entities") and a.get("error") == b.get("error")
        assert [x["label"] for x in a.get("attributes", [])] == [x["label"] for x in b.get("attributes", [])]


def test_tag_leaves_images_unread_for_the_default_and_reads_them_with_attributes(photos, tmp_path):
    (tmp_path / "cat.jpg").write_bytes(photos["chelsea"].read_bytes())
    (tmp_path / "notes.jpg").write_bytes(b"hello\n")
    posts = write_posts(
        tmp_path,
        [
            {"id": "a", "text": "Barack Obama visits Paris", "image": "notes.jpg"},
            {"id": "b", "text": "Chelsea is sleeping", "image": "cat.jpg"},
            {"id": "c", "text": "Kobe Bryant scores", "image": "absent.jpg"},
            {"id": "d", "text": "flying to Paris"},
        ],
    )
    result = tag("--in", str(posts), "--out", str(tmp_path / "default.jsonl"))
    assert result.exit_code == 0, result.output
    records = read_records(tmp_path / "default.jsonl")
    assert [r["attributes"] for r in records] == [None, None, None, []] and not any(
        "error" in r for r in records
    )
    assert [e["text"] for e in records[0]["entities"]] == ["Barack Obama", "Paris"]
    assert (
        "tagged 4, errors 0, skipped 0 (already in the output); 3 images not read (the model reads none: "
        "--attributes reads them for their classes); "
    ) in result.stderr
    asked = tag("--in", str(posts), "--out", str(tmp_path / "asked.jsonl"), "--attributes")
    assert asked.exit_code == 0, asked.output
    records = read_records(tmp_path / "asked.jsonl")
    assert [r.get("error") for r in records] == [
        f"{posts}:1: {tmp_path / 'notes.jpg'}: not an image (unrecognised format)",
        None,
        f"{posts}:3: {tmp_path / 'absent.jpg'}: file not found",
        None,
    ]
    assert records[1]["attributes"][0]["label"] in CAT_CLASSES and records[3]["attributes"] == []
    assert "tagged 2, errors 2, skipped 0 (already in the output); " in asked.stderr


def test_predict_says_the_image_was_not_read(photos):
    result = runner.invoke(app, ["predict", "--text", "Chelsea is sleeping", "--image", str(photos["text"])])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "image: not read: the model reads no image (--attributes to get its classes)"
    )
    as_json = runner.invoke(app, ["predict", "--text", "Chelsea", "--image", str(photos["text"]), "--json"])
    assert json.loads(as_json.stdout)["attributes"] is None


def test_tag_images_root_confines_image_paths(photos, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "cat.jpg").write_bytes(photos["chelsea"].read_bytes())
    (tmp_path / "outside.jpg").write_bytes(photos["chelsea"].read_bytes())
    (root / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    posts = write_posts(
        tmp_path,
        [
            {"id": "in", "text": "Chelsea", "image": "cat.jpg"},
            {"id": "up", "text": "Chelsea", "image": "../outside.jpg"},
            {"id": "abs", "text": "Chelsea", "image": str(tmp_path / "outside.jpg")},
            {"id": "link", "text": "Chelsea", "image": "link.jpg"},
        ],
    )
    result = tag(
        *(
            "--in",
            str(posts),
            "--out",
            str(tmp_path / "out.jsonl"),
            "--images-root",
            str(root),
            "--attributes",
        )
    )
    assert result.exit_code == 0, result.output
    records = read_records(tmp_path / "out.jsonl")
    assert records[0]["attributes"] and "error" not in records[0]
    assert [r["error"] for r in records[1:]] == [
        f"{posts}:{n}: image {v!r} is outside --images-root {root}"
        for n, v in [(2, "../outside.jpg"), (3, str(tmp_path / "outside.jpg")), (4, "link.jpg")]
    ]


def test_tag_resumes_after_an_interruption_mid_line(photos, tmp_path):
    (tmp_path / "cat.jpg").write_bytes(photos["chelsea"].read_bytes())
    lines = [
        {"id": f"p{i}", "text": text}
        for i, text in enumerate(
            [
                "Barack Obama visits Paris",
                "Kobe Bryant scores",
                "flying to Paris",
                "Google hires Sarah",
                "New York at night",
                "Chelsea is sleeping",
            ]
        )
    ]
    lines[1]["image"] = "cat.jpg"
    posts = write_posts(tmp_path, [*lines[:4], "{broken", *lines[4:]])
    whole = tmp_path / "whole.jsonl"
    assert tag("--in", str(posts), "--out", str(whole), "--batch-size", "3", "--attributes").exit_code == 0
    complete = whole.read_text(encoding="utf-8").splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_text(complete[0] + complete[1] + complete[2][: len(complete[2]) // 2], encoding="utf-8")
    result = tag("--in", str(posts), "--out", str(cut), "--batch-size", "3", "--attributes")
    assert result.exit_code == 0, result.output
    assert "cut.jsonl: removed an incomplete last line" in result.stderr
    assert "cut.jsonl: 2 posts already there are skipped" in result.stderr
    assert "tagged 4, errors 1, skipped 2 (already in the output)" in result.stderr
    resumed = read_records(cut)
    assert [r["id"] for r in resumed] == ["p0", "p1", "p2", "p3", "posts-5", "p4", "p5"]
    assert _rounded(resumed) == _rounded(read_records(whole))
    again = tag("--in", str(posts), "--out", str(cut))
    assert (
        "nothing to do: all 7 posts of the input are in the output already" in again.stderr
        and read_records(cut) == resumed
    )


def _rounded(records: list[dict]) -> list[dict]:
    # a post's image may be encoded in another batch after a resume: equal up to float noise
    return [
        {**r, "attributes": [(a["label"], round(a["probability"], 2)) for a in r.get("attributes", [])]}
        for r in records
    ]


def test_tag_refuses_an_output_that_is_not_its_own(tmp_path):
    posts = write_posts(tmp_path, [{"text": "flying to Paris"}])
    (tmp_path / "notes.txt").write_text("my notes\nmore notes\n")
    result = tag("--in", str(posts), "--out", str(tmp_path / "notes.txt"))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {tmp_path / 'notes.txt'}:1: not an mner tag record (a tagged post or an error record); give another --out: mner "
        "never changes a file it did not write\n"
    )
    assert (tmp_path / "notes.txt").read_text() == "my notes\nmore notes\n"


def test_tag_into_a_missing_folder_is_one_clear_error(tmp_path):
    posts = write_posts(tmp_path, [{"text": "flying to Paris"}])
    out = tmp_path / "missing" / "dir" / "x.jsonl"
    result = tag("--in", str(posts), "--out", str(out))
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"error: {out}: folder {str(out.parent)!r} does not exist\n"
    assert not (tmp_path / "missing").exists()


def test_tag_missing_input_exits_2(tmp_path):
    result = tag("--in", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'nope.jsonl'}: file not found\n"
    assert not (tmp_path / "out.jsonl").exists()


def test_pipeline_import_is_light():
    code = "import mner.serving.pipeline, sys; print('torch' in sys.modules, 'PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
