"""Every registered channel (``mner.channels.spec.CHANNELS``) is present wherever a channel must be: the command
line, JSONL, Parquet, the service's schema, the web form, the model card, the export's sample posts and the
typed fields. A channel added to the registry and forgotten in one place fails here, naming the place.

Every registered reading unit (``mner.channels.readers.READERS``) likewise: its config block round-trips through
a TOML config and a model's config.json and is checked strictly, its flat keys of before migrate into it, its
token-feature module is registered and as wide as it says, its arrays are in the batch layout, its card lines are
on the card, and a model folder of before (flat keys, the encoder's weight names) loads."""

from __future__ import annotations

import dataclasses
import json
import re
from importlib import resources

import pytest
import typer

from mner.channels.readers import READERS
from mner.channels.spec import CHANNELS, text_fields
from mner.cli import app
from mner.config import ModelConfig
from mner.data import MnerInputError

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
        assert all(spec.words(post, config.reading(spec.name)) for post in posts), (
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


# ------------------------------------------------------------------------------------------ reading units

UNITS = READERS.values()


def config_of_unit(unit, block=None, **changes) -> ModelConfig:
    """A small model config whose reading unit ``unit`` is the unit's example block (or ``block``)."""
    values = {
        "tags": ["O", "B-PER", "I-PER"],
        "words": ["<pad>", "<unk>"],
        "chars": ["<pad>", "<unk>"],
        "channels": ["text", unit.channel],
        "char_dim": 8,
        "char_filters": 8,
        "hidden": 8,
        unit.name: block or unit.example,
    }
    return ModelConfig(**(values | changes))


def toml_value(value) -> str:
    """A TOML literal of a config value (bool, number, string, list of strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # a number, a basic string and an array of them read the same in TOML


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_units_example_sets_every_option_and_is_enabled(unit):
    default, example = unit.config(), unit.example
    same = [
        f.name
        for f in dataclasses.fields(unit.config)
        if getattr(default, f.name) == getattr(example, f.name)
    ]
    assert not same, (
        f"{unit.name}'s example leaves {same} at their defaults: the round trips would not see them"
    )
    assert unit.enabled(example) and unit.channel in CHANNELS
    assert unit.name in {f.name for f in dataclasses.fields(ModelConfig)}, (
        f"ModelConfig has no {unit.name!r} block"
    )


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_block_round_trips_through_toml_and_config_json(unit, tmp_path):
    from mner.training.runconfig import read_run_config

    example = dataclasses.asdict(unit.example)
    lines = [f"{key} = {toml_value(value)}" for key, value in example.items() if value is not None]
    path = tmp_path / "c.toml"
    path.write_text(
        f'[model]\nchannels = ["text", "{unit.channel}"]\n\n[model.{unit.name}]\n' + "\n".join(lines) + "\n"
    )
    read = read_run_config(path).model
    config = ModelConfig.from_dict({"tags": ["O"], "words": [], "chars": [], **read})
    assert getattr(config, unit.name) == unit.example, f"[model.{unit.name}] does not read back as written"
    saved = json.loads(json.dumps(config.to_dict()))  # what a model folder's config.json holds
    assert saved[unit.name] == example, f'config.json does not hold "{unit.name}" as one object'
    assert ModelConfig.from_dict(saved) == config


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_block_is_checked_strictly(unit, tmp_path):
    from mner.training.runconfig import read_run_config

    base = {"tags": ["O"], "words": [], "chars": [], "channels": ["text", unit.channel]}
    name = rf"\[model\.{unit.name}\]"
    with pytest.raises(ValueError, match=rf"unknown {name} key\(s\) \['colour'\]; expected some of"):
        ModelConfig.from_dict({**base, unit.name: {"colour": 1}})
    field = dataclasses.fields(unit.config)[0]
    with pytest.raises(ValueError, match=rf"{name} key '{field.name}': expected {field.type}, got list"):
        ModelConfig.from_dict({**base, unit.name: {field.name: [1]}})
    with pytest.raises(ValueError, match=rf"{name}: expected a table, got int 3"):
        ModelConfig.from_dict({**base, unit.name: 3})
    path = tmp_path / "c.toml"
    path.write_text(f"[model.{unit.name}]\ncolour = 1\n")
    with pytest.raises(MnerInputError, match=rf"c.toml: unknown {name} key\(s\) \['colour'\]"):
        read_run_config(path)


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_an_old_flat_config_migrates_to_the_block(unit, tmp_path):
    from mner.training.runconfig import read_run_config

    flat = {old: getattr(unit.example, new) for old, new in unit.flat_keys.items()}
    assert set(unit.flat_keys.values()) == {f.name for f in dataclasses.fields(unit.config)}
    config = ModelConfig.from_dict(
        {"tags": ["O"], "words": [], "chars": [], "channels": ["text", unit.channel], **flat}
    )
    assert getattr(config, unit.name) == unit.example
    path = tmp_path / "c.toml"
    path.write_text("[model]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in flat.items()))
    assert read_run_config(path).model == {unit.name: dataclasses.asdict(unit.example)}
    old, new = next(iter(unit.flat_keys.items()))
    with pytest.raises(ValueError, match=rf"\['{new}'\] given both flat and in \[model.{unit.name}\]"):
        ModelConfig.from_dict(
            {"tags": ["O"], "words": [], "chars": [], old: flat[old], unit.name: {new: flat[old]}}
        )


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_units_module_arrays_and_card_lines(unit):
    import torch

    from mner.inputs.batching import WordInputs, batch_layout, flat_arrays
    from mner.model.card import model_card
    from mner.model.features import TOKEN_FEATURES
    from mner.model.network import TaggingNetwork, as_tensors
    from mner.model.torch_model import TorchModel
    from mner.runtime.export import sample_posts

    config = config_of_unit(unit)
    assert unit.name in TOKEN_FEATURES, f"no token-feature module registered for {unit.name!r}"
    network = TaggingNetwork(config)
    module = network.encoder.token_features[unit.name]
    batch = TorchModel(network, {}).batches.build(sample_posts(config)[0])
    arrays = unit.arrays(unit.example)
    assert {f"text.{a}" for a in arrays} <= set(batch_layout(config)), f"{arrays} are not all in batch_layout"
    assert {f"text.{a}" for a in arrays} <= set(flat_arrays(batch)), f"{arrays} are not all in a built batch"
    assert set(arrays) <= {f.name for f in dataclasses.fields(WordInputs)}, "an array has no WordInputs field"
    with torch.inference_mode():
        out = module(as_tensors(batch).text)
    assert out.shape == (2, batch.text.mask.shape[1], module.dim), (
        f"{unit.name}'s module is not {module.dim} wide"
    )
    without = network.encoder.embed_dim - module.dim
    assert TaggingNetwork(config_of_unit(unit, unit.config(), channels=["text"])).encoder.embed_dim == without
    card = model_card(config, {})
    lines = unit.card_lines(unit.example, False)
    assert lines and all(line in card for line in lines), f"the card lacks {unit.name}'s lines"


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_a_model_folder_of_before_loads(unit, tmp_path):
    """A model saved before format 4: the block's keys flat in config.json, the module's weights held by the encoder
    (``encoder.alignment.weight``); it loads, and tags as the model it was saved from."""
    import torch
    from safetensors.torch import load_file, save_file

    from mner.data import Post
    from mner.model.folder import file_sha256
    from mner.model.network import TaggingNetwork
    from mner.model.torch_model import TorchModel, load_torch_model
    from mner.runtime.export import sample_posts

    torch.manual_seed(0)
    config = config_of_unit(unit)
    model = TorchModel(TaggingNetwork(config), {})
    folder = model.save(tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    for old in unit.old_weights:
        assert any(k.startswith(f"encoder.token_features.{unit.name}.{old}.") for k in state), (
            f"no weight {old!r}"
        )
    state = {k.replace(f"encoder.token_features.{unit.name}.", "encoder."): v for k, v in state.items()}
    save_file(state, str(folder / "model.safetensors"))
    record = json.loads((folder / "config.json").read_text())
    block = record["model"].pop(unit.name)
    record["model"] |= {old: block[new] for old, new in unit.flat_keys.items()}
    record |= {"format_version": 3, "weights_sha256": file_sha256(folder / "model.safetensors")}
    (folder / "config.json").write_text(json.dumps(record))
    loaded = load_torch_model(folder)
    assert loaded.config == config
    posts = sample_posts(config)[0] + [Post(("Paris",))]
    assert loaded.predict_tags(posts) == model.predict_tags(posts)


def test_the_repos_configs_and_shipped_models_write_each_reading_as_its_block():
    """configs/*.toml and the packaged models' config.json are in today's form: no reading's flat keys of before."""
    import tomllib
    from pathlib import Path

    from mner.model.folder import FORMAT_VERSION, MODELS

    flat = {key for unit in UNITS for key in unit.flat_keys}
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "configs").glob("*.toml")):
        model = tomllib.loads(path.read_text(encoding="utf-8")).get("model", {})
        assert not flat & set(model), f"{path.name} writes {sorted(flat & set(model))} flat"
    for name, packaged in MODELS.items():
        record = json.loads((packaged.folder / "config.json").read_text(encoding="utf-8"))
        assert not flat & set(record["model"]), f"packaged model {name!r} writes its reading's keys flat"
        assert record["format_version"] == FORMAT_VERSION, name
