"""``mner train``, ``evaluate``, ``predict`` and ``demo``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

from mner.channels.spec import CHANNELS, text_fields
from mner.cli.errors import fail, user_errors
from mner.cli.options import (
    AttributesOption,
    ChannelArgs,
    LabelMapOption,
    MinScoreOption,
    ModelOption,
    RuntimeOption,
    ThreadsOption,
    channel_options,
)
from mner.data import MnerInputError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "posts.jsonl"
# how ``mner predict`` is given what fills each channel (a caption also stands in from an image's labels)
PREDICT_HINTS = {
    name: spec.predict_flag + (" or --image" if spec.from_attributes else "")
    for name, spec in CHANNELS.items()
    if spec.predict_flag is not None
}


@channel_options(files=("tsv", "kg", "features"), several=True)
@user_errors
def train(
    train_files: Annotated[
        list[Path],
        typer.Option(
            "--train",
            help="Training data, CoNLL with IMGID lines; give it once per file to train on several.",
        ),
    ],
    dev_files: Annotated[
        list[Path],
        typer.Option(
            "--dev", help="Dev data (CoNLL) for checkpoint selection; several: their posts together."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the model to.")],
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the config's).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with [model] and [train] tables.")] = None,
    test_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--test",
            help="Score this CoNLL file once at the end and record it in the model card (once per file).",
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (overrides the config's).")] = None,
    threads: Annotated[int | None, typer.Option(help="torch.set_num_threads for training.")] = None,
    device: Annotated[
        str | None,
        typer.Option(
            help="Train on 'cpu' (the config's default) or 'cuda'; the model is saved for the CPU either way."
        ),
    ] = None,
    onnx: Annotated[
        bool,
        typer.Option("--onnx/--no-onnx", help="Export the model to ONNX beside its weights (mner export)."),
    ] = True,
    label_map: LabelMapOption = None,
    channels: ChannelArgs = None,
) -> None:
    """Train a tagger on CoNLL data (its entity types are the training data's); the epoch with the best dev F1
    is kept."""
    from mner.channels.sources import ChannelSources
    from mner.evaluate import entity_scores
    from mner.model.folder import check_model_out
    from mner.training.trainer import Trainer

    check_model_out(out)  # before an hour of training, not after it
    run = _run_config(config, seed=seed, epochs=epochs, threads=threads, device=device)
    reads = run.model.get("channels", ["text"])
    sources = ChannelSources.open(channels.files, run.model.get("image_backbone", "lite0"))
    sources.require(reads)
    data = {"train": list(train_files), "dev": list(dev_files), "test": list(test_files or [])}
    filled = {
        name: fill(sources, [p for path in paths for p in gold(path, label_map)], reads, name)
        for name, paths in data.items()
        if name != "test"
    }

    def report(row: dict) -> None:
        typer.echo(
            f"epoch {row['epoch']:>3}  loss {row['loss']:8.3f}  dev F1 {row['dev_f1']:6.2f}  "
            f"{row['seconds']:5.1f} s",
            err=True,
        )

    trainer = Trainer(filled["train"].posts, filled["dev"].posts, run, images=sources.images, on_epoch=report)
    types = list(trainer.model.config.labels.types)
    typer.echo(f"entity types (from the training data): {', '.join(types)}", err=True)
    for path in data["dev"]:
        unknown_types_warning(gold(path, label_map), types, path)
    tests = {path: gold(path, label_map) for path in data["test"]}  # read (and checked) before training
    for path, posts in tests.items():
        unknown_types_warning(posts, types, path)
    trainer.fit()
    model = trainer.model
    given = [
        *(("--train", path) for path in train_files),
        *(("--dev", path) for path in dev_files),
        *(("--test", path) for path in test_files or []),
        ("--config", config),
        ("--label-map", label_map),
        *(
            (flag, v)
            for flag, value in channels.flags.items()
            for v in (value if isinstance(value, list) else [value])
        ),
        ("--seed", seed),
        ("--epochs", epochs),
        ("--threads", threads),
        ("--device", device),
        ("--out", out),
    ]
    model.record["training"]["command"] = "mner train " + " ".join(
        f"{flag} {shlex.quote(str(v))}" for flag, v in given if v is not None
    )
    model.record["training"]["data"] = {k: [str(v) for v in paths] for k, paths in data.items() if paths}
    scores = None
    for number, (path, posts) in enumerate(tests.items()):  # each scored on its own, the first as "test"
        test = fill(sources, posts, reads, str(path)).posts
        predicted = model.predict_tags(test, images=sources.images)
        scored = entity_scores([list(p.tags) for p in test], predicted, types)
        scores = scores or scored
        label = "test" if number == 0 else f"test {number + 1}"
        model.record.setdefault("scores", {})[label] = {**scored.to_json(), "file": str(path)}
    model.save(out)
    if onnx:
        try:
            from mner.runtime.export import export_model

            export_model(model, out)  # predict, tag, serve and evaluate then run on ONNX Runtime
        except (ImportError, RuntimeError) as err:
            typer.echo(f"warning: no ONNX export ({err}); the model runs on PyTorch", err=True)
    typer.echo(
        f"best epoch {model.record['training']['best_epoch']}, dev F1 "
        f"{model.record['training']['dev_f1']:.2f}"
        + (f", test F1 {100 * scores.f1:.2f}" if scores else "")
        + f"; model written to {out}"
    )


def _run_config(config: Path | None, **overrides):
    """The TOML run config (or the defaults) with the options given on the command line over its [train] table."""
    from mner.training.runconfig import read_run_config

    run = read_run_config(config)
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        run.train = dataclasses.replace(run.train, **given)
    except ValueError as err:  # a value TrainConfig refuses (a device neither cpu nor cuda)
        raise MnerInputError(str(err)) from None
    return run


@channel_options(files=("tsv", "kg", "features"))
@user_errors
def evaluate(
    data: Annotated[Path, typer.Option(help="CoNLL file with gold tags.")],
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    threads: ThreadsOption = None,
    runtime: RuntimeOption = "auto",
    label_map: LabelMapOption = None,
    channels: ChannelArgs = None,
) -> None:
    """Entity-level P/R/F1 (conlleval-compatible) of a model on gold data, per type: every type of the data and
    the model (a type the model does not tag is scored with recall 0, and a warning)."""
    from mner.channels.sources import ChannelSources
    from mner.evaluate import entity_scores, format_scores
    from mner.runtime.runners import load_runner

    runner = load_runner(model, runtime, threads or 1)
    # a frozen encoder's features of the data are kept in the feature cache (~/.cache/mner/features): a data
    # file is scored again and again (each runtime, with and without context, each model on the same encoder)
    runner.use_features(threads or 1, cached=True)
    sources = ChannelSources.open(channels.files, runner.config.image_backbone)
    filled = fill(sources, gold(data, label_map), runner.config.channels, "data", runner.config.list_channels)
    warning = filled.report.warning(runner.config.channels)
    if warning is not None:
        typer.echo(f"warning: {warning}", err=True)
    types = list(runner.config.labels.types)
    unknown_types_warning(filled.posts, types, data)
    with progress_bar("evaluating", "post") as progress:
        predicted = runner.predict_tags(filled.posts, images=filled.images, progress=progress)
    scores = entity_scores([list(p.tags) for p in filled.posts], predicted, types)
    typer.echo(json.dumps(scores.to_json()) if as_json else format_scores(scores))


@contextlib.contextmanager
def progress_bar(what: str, unit: str):
    """A ``progress(done, total)`` callback drawing a bar on stderr when stderr is a terminal (None when not:
    piped or captured output stays clean)."""
    import sys

    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(desc=what, unit=unit, leave=False, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            if bar.total != total:  # known once the posts are cut into pieces: draw the bar with it
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        yield progress


@channel_options(files=("kg",), texts=True)
@user_errors
def predict(
    text: Annotated[str, typer.Option(help="The post's text (tokenised like the Twitter-2015 files).")],
    model: ModelOption = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print {tokens, entities, attributes (null: the image was not read), knowledge, caption, context} as "
            "JSON (each entity with its token and character offsets and its score), and 'warnings' (a list) when the model's channels had no "
            "source for the post.",
        ),
    ] = False,
    image: Annotated[
        Path | None,
        typer.Option(
            help="The post's image: read by models that use it, and for its ImageNet attributes with "
            "--attributes."
        ),
    ] = None,
    attributes: AttributesOption = False,
    threads: ThreadsOption = None,
    runtime: RuntimeOption = "auto",
    min_score: MinScoreOption = 0.0,
    channels: ChannelArgs = None,
) -> None:
    """Tag one post and print its entities with their probabilities and characters in the text (and its image's
    attributes and the knowledge used)."""
    from mner.data import tokenize
    from mner.serving.pipeline import Pipeline

    if not tokenize(text):
        fail("--text is empty: expected the words of a post")
    pipeline = Pipeline(
        model, channels.files, runtime=runtime, threads=threads, min_score=min_score, attributes=attributes
    )
    result = pipeline.tag(text, image=image, **channels.texts).to_dict()
    warning = pipeline.last_report.warning(pipeline.channels, PREDICT_HINTS)
    if warning is not None:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        if warning:  # the channels the post had no source for, and what it could not use (the same line)
            result["warnings"] = [warning]
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    from mner.data import Span

    spans = [Span(**e) for e in result["entities"]]
    typer.echo(highlight(result["tokens"], spans))
    for s in spans:
        typer.echo(
            f"  {s.type:<6} {s.text}  (score {s.score:.2f}; tokens {s.start}–{s.end}, characters "
            f"{s.start_char}–{s.end_char})"
        )
    for line in evidence_lines(result, given_caption=channels.texts.get("caption")):
        typer.echo(line)
    if result.get("read_as") is not None:
        typer.echo(read_as_line(result["read_as"]))


def read_as_line(reading: dict) -> str:
    """``context read as: Bears (sports team → ORG), Chicago (city → LOC); route: typed (...)``."""
    names = [
        f"{e['name']} ({e['kind'] or 'no kind'} → {e['type'] or '?'}{'' if e['in_post'] else ', not in the post'})"
        for e in reading["entities"]
    ]
    return (
        f"context read as: {', '.join(names) or 'no entity'}; route: {reading['route']} ({reading['path']})"
    )


def evidence_lines(result: dict, given_caption: str | None = None) -> list[str]:
    """Lines for the image attributes, a caption made from them, and the knowledge used (none if absent)."""
    lines = []
    if result["attributes"] is None:  # the post's image was not opened
        lines.append("image: not read: the model reads no image (--attributes to get its classes)")
    if result["attributes"]:
        lines.append(
            "attributes: " + ", ".join(f"{a['label']} {a['probability']:.2f}" for a in result["attributes"])
        )
    if result["caption"] and not given_caption:
        lines.append(f"caption (from the image attributes): {result['caption']}")
    found = result["knowledge"]
    if found and found["path"] != "none":
        entity = (
            f"{found['label'] or found['entity']} ({found['entity']})"
            if found["entity"]
            else found["mention"]
        )
        how = {
            "image": f"image match, hop {found['hop']}, similarity {found['similarity']}",
            "text": "text match",
            "name": "first-name rule",
        }.get(found["path"], found["path"])
        triples = "; ".join(" ".join(t) for t in found["triples"])
        lines.append(f"knowledge ({how}): {entity}: {triples}")
    return lines


SAMPLE_PHOTOS = ("chelsea", "astronaut", "coffee")  # scikit-image's bundled photos, written as JPEG


@user_errors
def demo(
    model: ModelOption = None,
    threads: ThreadsOption = None,
    runtime: RuntimeOption = "auto",
    photos: Annotated[
        Path | None,
        typer.Option(
            help="Instead: write sample photos (chelsea.jpg, astronaut.jpg, coffee.jpg, made from scikit-image's "
            "bundled photos) into this folder, created if missing, to try the image commands on.",
        ),
    ] = None,
) -> None:
    """Tag the example posts that ship with mner and print their entities."""
    from mner.channels.posts import iter_jsonl_posts
    from mner.serving.pipeline import Pipeline, PostInput

    if photos is not None:
        for path in write_sample_photos(photos):
            typer.echo(str(path))
        return
    pipeline = Pipeline(model, runtime=runtime, threads=threads)
    posts = [p for _, p in iter_jsonl_posts(EXAMPLES)]
    typer.echo(f"model: {model or 'shipped default'}  ({', '.join(pipeline.channels)})\n")
    fields = [{name: getattr(p, name) for name in text_fields()} for p in posts]
    items = [PostInput(" ".join(p.tokens), tokens=p.tokens, **f) for p, f in zip(posts, fields, strict=True)]
    for post, result in zip(posts, pipeline.tag_many(items)):
        spans = result.entities
        typer.echo(highlight(list(post.tokens), spans))
        typer.echo("  " + ("; ".join(f"{s.text} → {s.type}" for s in spans) or "no entities") + "\n")


def write_sample_photos(folder: Path) -> list[Path]:
    """Write ``SAMPLE_PHOTOS`` as JPEGs into ``folder`` (made if missing; its parent must exist); the photos come
    from the scikit-image package. A file already there is kept when it is that photo, else refused: mner never
    overwrites a file (nothing is written then).

    Raises:
        MnerInputError: the parent folder is missing, a file of that name holds something else, or a write fails.
    """
    import io

    try:
        from skimage import data
    except ImportError:
        raise MnerInputError(
            "--photos needs scikit-image, which holds the photos: pip install -e '.[demo]' (scripts/demo.sh does)"
        ) from None
    from PIL import Image

    photos = {}
    for name in SAMPLE_PHOTOS:
        encoded = io.BytesIO()
        Image.fromarray(getattr(data, name)()).save(encoded, "JPEG", quality=90)
        photos[folder / f"{name}.jpg"] = encoded.getvalue()
    for path, photo in photos.items():
        if path.exists() and (not path.is_file() or path.read_bytes() != photo):
            raise MnerInputError(
                "exists and is not mner's sample photo: mner never overwrites a file; give another --photos folder",
                path,
            )
    try:
        folder.mkdir(exist_ok=True)
        for path, photo in photos.items():
            if not path.exists():
                with open(path, "xb") as out:
                    out.write(photo)
    except FileNotFoundError:
        raise MnerInputError(f"folder {str(folder.parent)!r} does not exist", folder) from None
    except OSError as err:
        raise MnerInputError(f"cannot write the photos: {err.strerror or err}", folder) from None
    return list(photos)


def gold(path: Path, label_map: Path | None):
    """The posts of a CoNLL file as BIO (``mner.labels.read_gold``); each conversion is said once on stderr."""
    from mner.labels import read_gold, read_label_map

    names = read_label_map(label_map) if label_map is not None else None
    return read_gold(path, names, note=lambda message: typer.echo(f"note: {message}", err=True))


def unknown_types_warning(posts, types: list[str], path: Path) -> None:
    """Say on stderr which gold types of ``path`` the model does not tag (they are scored, with recall 0)."""
    from mner.labels import entity_types

    missing = [t for t in entity_types(posts) if t not in types]
    if missing:
        typer.echo(
            f"warning: {path} holds entity type(s) {', '.join(missing)} that the model does not tag (it tags "
            f"{', '.join(types)}): scored all the same, with recall 0 (--label-map FILE renames or merges types)",
            err=True,
        )


def fill(sources, posts, channels, name: str, lists=()):
    """Posts with their channels filled (``mner.channels.sources``); what was found goes to stderr."""
    filled = sources.fill(posts, channels, lists=lists)
    if sources.texts or sources.kg is not None or sources.images is not None:
        typer.echo(f"{name}: {filled.report.summary()}", err=True)
    return filled


def highlight(tokens: list[str], spans) -> str:
    """The post with each entity as ``[text TYPE]``, coloured by type on a terminal."""
    colours = {"PER": "cyan", "LOC": "green", "ORG": "magenta", "OTHER": "yellow"}
    starts = {s.start: s for s in spans}
    out, i = [], 0
    while i < len(tokens):
        if i in starts:
            s = starts[i]
            out.append(typer.style(f"[{s.text} {s.type}]", fg=colours.get(s.type), bold=True))
            i = s.end
        else:
            out.append(tokens[i])
            i += 1
    return " ".join(out)
