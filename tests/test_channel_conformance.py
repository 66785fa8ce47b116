"""Every registered channel (``mner.channels.spec.CHANNELS``) is present wherever a channel must be: the command
line, JSONL, Parquet, the service's schema, the web form, the model card, the export's sample posts and the
typed fields. A channel added to the registry and forgotten in one place fails here, naming the place."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

import pytest
import typer

from mner.channels.spec import CHANNELS, text_fields
from mner.cli import app
from mner.config import ModelConfig

SPECS = CHANNELS.values()
IDS = [spec.name for spec in SPECS]


def command_options(name: str) -> set[str]:
    command = typer.main.get_command(app).commands[name]
    return {opt for param in command.params if param.param_type_name == "option" for opt in param.opts}


def config_reading(spec) -> ModelConfig:
    """A small model config that reads the channel (through the fusion where it needs one)."""
    channels = ["text"] if spec.reads == "text" else ["text", spec.name]
    return ModelConfig(
        tags=["O", "B-PER", "I-PER"],
        words=["<pad>", "<unk>"],
        chars=["<pad>", "<unk>"],
        channels=channels,
        fusion=spec.reads != "text",
    )


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_the_command_line_offers_the_channel(spec):
    if spec.file_flag is not None:
        for command in ("train", "evaluate"):
            assert spec.file_flag in command_options(command), f"mner {command} lacks {spec.file_flag}"
        if spec.source in ("tsv", "kg"):
            assert spec.file_flag in command_options("tag"), f"mner tag lacks {spec.file_flag}"
    if spec.predict_flag is not None:
        assert spec.predict_flag in command_options("predict"), f"mner predict lacks {spec.predict_flag}"
    if spec.field is not None and spec.max_chars is not None:
        flag = f"--max-{spec.field}-chars"
        assert flag in command_options("serve"), f"mner serve lacks {flag}"


@pytest.mark.parametrize("spec", [s for s in SPECS if s.field is not None], ids=lambda s: s.name)
def test_jsonl_and_parquet_carry_the_channels_field(spec):
    from mner.channels.posts import post_from_json, post_to_json
    from mner.serving.jobs import PARQUET_FIELDS
    from mner.serving.outputs import parquet_schema, records_table, table_records

    value = "field value" if spec.field != "text" else "Kobe Bryant"
    post = post_from_json({"text": "Kobe Bryant", spec.field: value})
    assert post.extra.get("text") == value if spec.field == "text" else getattr(post, spec.field) == value
    assert post_to_json(post)[spec.field] == value, f"post_to_json drops {spec.field!r}"
    assert spec.field in PARQUET_FIELDS, f"a Parquet input's {spec.field!r} column is not read"
    if spec.field in text_fields():
        assert spec.field in parquet_schema().names, f"the Parquet output has no {spec.field!r} column"
        record = {"id": "a", "tokens": ["x"], "entities": [], "attributes": [], "knowledge": None}
        record |= {name: None for name in text_fields()} | {spec.field: value, "warnings": []}
        assert table_records(records_table([record])) == [record]


@pytest.mark.parametrize("spec", [s for s in SPECS if s.field is not None], ids=lambda s: s.name)
def test_the_service_schema_and_web_form_carry_the_channels_field(spec):
    from mner.serving.service import _TAG_REQUEST_DOC, FIELDS, Limits, TagRequest, TagResponse

    assert spec.field in FIELDS, f"the service's form fields lack {spec.field!r}"
    assert spec.field in TagRequest.model_fields, f"the JSON request lacks {spec.field!r}"
    multipart = _TAG_REQUEST_DOC["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert spec.field in multipart, f"the multipart schema lacks {spec.field!r}"
    if spec.field in text_fields():
        assert spec.field in TagResponse.model_fields, f"the response lacks {spec.field!r}"
        assert spec.field in Limits().max_chars, f"the service has no limit on {spec.field!r}"
    page = resources.files("mner").joinpath("web", "index.html").read_text(encoding="utf-8")
    assert re.search(rf'name="{spec.field}"', page), f"the web form has no input named {spec.field!r}"


@pytest.mark.parametrize("spec", [s for s in SPECS if s.field is not None], ids=lambda s: s.name)
def test_the_typed_fields_exist(spec):
    from mner.data import Post
    from mner.serving.pipeline import PostInput
    from mner.serving.result import TagResult

    assert spec.field in {f.name for f in dataclasses.fields(PostInput)}, f"PostInput has no {spec.field!r}"
    if spec.field in text_fields():
        assert spec.field in {f.name for f in dataclasses.fields(Post)}, f"Post has no {spec.field!r}"
        assert spec.field in {f.name for f in dataclasses.fields(TagResult)}, (
            f"TagResult has no {spec.field!r}"
        )


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_the_card_and_the_export_samples_cover_the_channel(spec):
    from mner.model.card import model_card
    from mner.runtime.export import sample_posts

    config = config_reading(spec)
    assert spec.fill in model_card(config, {}), f"the model card does not say how {spec.name!r} is filled"
    posts, images = sample_posts(config)
    if spec.reads == "words":
        assert all(spec.words(post, config.context_form) for post in posts), (
            f"no sample words for {spec.name!r}"
        )
    if spec.reads == "image":
        assert all(images.get(post.image) is not None for post in posts), f"no sample image for {spec.name!r}"


def test_a_channel_missing_from_one_place_is_named(monkeypatch):
    """The test above fails, naming the place, when a registered channel's field is missing from one of them."""
    from mner.serving import service

    spec = CHANNELS["caption"]
    monkeypatch.setattr(service, "FIELDS", tuple(f for f in service.FIELDS if f != "caption"))
    with pytest.raises(AssertionError, match="the service's form fields lack 'caption'"):
        test_the_service_schema_and_web_form_carry_the_channels_field(spec)
    monkeypatch.undo()
    page = resources.files("mner").joinpath("web", "index.html").read_text(encoding="utf-8")
    monkeypatch.setattr(resources, "files", lambda _: _Page(page.replace('name="caption"', 'name="gone"')))
    with pytest.raises(AssertionError, match="the web form has no input named 'caption'"):
        test_the_service_schema_and_web_form_carry_the_channels_field(spec)


class _Page:
    """A stand-in for the package's files: the web page with a field removed."""

    def __init__(self, text: str):
        self.text = text

    def joinpath(self, *parts):
        return self

    def read_text(self, encoding="utf-8"):
        return self.text
