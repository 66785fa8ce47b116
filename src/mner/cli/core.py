"""``mner train``, ``evaluate``, ``predict`` and ``demo``."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

from mner.cli import app
from mner.cli.errors import fail, user_errors
from mner.data import MnerInputError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "posts.jsonl"

CaptionsOption = Annotated[Path | None, typer.Option(
    "--captions", help="Captions TSV (image_id<TAB>caption) for models with a 'caption' channel.")]
KgOption = Annotated[Path | None, typer.Option(
    "--kg", help="Knowledge-graph file (mner kg build) for models with a 'knowledge' channel.")]
ImagesCacheOption = Annotated[Path | None, typer.Option(
    "--images-cache", help="Image feature cache (mner images extract) for the 'attributes' and 'image' channels.")]


@app.command()
@user_errors
def train(
    train_file: Annotated[Path, typer.Option("--train", help="Training data, CoNLL with IMGID lines.")],
    dev_file: Annotated[Path, typer.Option("--dev", help="Dev data (CoNLL) for checkpoint selection.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the model to.")],
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the config's).")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file with [model] and [train] tables.")] = None,
    test_file: Annotated[Path | None, typer.Option("--test", help="Score this CoNLL file once at the end "
                                                      "and record it in the model card.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (overrides the config's).")] = None,
    threads: Annotated[int | None, typer.Option(help="torch.set_num_threads for training.")] = None,
    device: Annotated[str | None, typer.Option(help="Train on 'cpu' (the config's default) or 'cuda'; the model "
                                                    "is saved for the CPU either way.")] = None,
    captions: CaptionsOption = None,
    kg: KgOption = None,
    images_cache: ImagesCacheOption = None,
) -> None:
    """Train a tagger on CoNLL data; the epoch with the best dev F1 is kept."""
    from mner.data import read_conll
    from mner.train import read_run_config, write_model
    from mner.train import train as run_training

    run = read_run_config(config)
    if seed is not None:
        run.train.seed = seed
    if epochs is not None:
        run.train.epochs = epochs
    if threads is not None:
        run.train.threads = threads
    if device is not None:
        try:
            run.train = dataclasses.replace(run.train, device=device)
        except ValueError as err:
            raise MnerInputError(str(err)) from None
    caption_map, store = load_context(captions, kg)
    from mner.prepare import check_channels

    images = open_images(images_cache, run.model.get("image_backbone", "lite0"))
    check_channels(run.model.get("channels", ["text"]), caption_map, store, images)
    train_posts = with_context(read_conll(train_file), caption_map, store, "train")
    dev_posts = with_context(read_conll(dev_file), caption_map, store, "dev")
    test_posts = with_context(read_conll(test_file), caption_map, store, "test") if test_file else None

    def report(row: dict) -> None:
        typer.echo(f"epoch {row['epoch']:>3}  loss {row['loss']:8.3f}  dev F1 {row['dev_f1']:6.2f}  "
                   f"{row['seconds']:5.1f} s", err=True)

    tagger, _ = run_training(train_posts, dev_posts, run, on_epoch=report, images=images)
    given = [("--train", train_file), ("--dev", dev_file), ("--test", test_file), ("--config", config),
             ("--captions", captions), ("--kg", kg), ("--images-cache", images_cache),
             ("--seed", seed), ("--epochs", epochs), ("--threads", threads), ("--device", device), ("--out", out)]
    command = "mner train " + " ".join(f"{flag} {shlex.quote(str(v))}" for flag, v in given if v is not None)
    scores = write_model(tagger, out, command, {"train": train_file, "dev": dev_file, "test": test_file},
                         test_posts, images)
    typer.echo(f"best epoch {tagger.record['training']['best_epoch']}, dev F1 "
               f"{tagger.record['training']['dev_f1']:.2f}" + (f", test F1 {scores['f1']:.2f}" if scores else "")
               + f"; model written to {out}")


@app.command()
@user_errors
def evaluate(
    model: Annotated[Path, typer.Option(help="Model folder.")],
    data: Annotated[Path, typer.Option(help="CoNLL file with gold tags.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    captions: CaptionsOption = None,
    kg: KgOption = None,
    images_cache: ImagesCacheOption = None,
) -> None:
    """Entity-level P/R/F1 (conlleval-compatible) of a model on gold data."""
    from mner.data import read_conll
    from mner.evaluate import entity_scores, format_scores
    from mner.tagger import load_tagger

    tagger = load_tagger(model)
    caption_map, store = load_context(captions, kg)
    posts = with_context(read_conll(data), caption_map, store, "data")
    images = open_images(images_cache, tagger.config.image_backbone)
    scores = entity_scores([list(p.tags) for p in posts], tagger.predict_tags(posts, images=images))
    typer.echo(json.dumps(scores.to_json()) if as_json else format_scores(scores))


@app.command()
@user_errors
def predict(
    text: Annotated[str, typer.Option(help="The post's text (tokenised like the Twitter-2015 files).")],
    model: Annotated[Path | None, typer.Option(help="Model folder, or a packaged model by name (default: the shipped 'default'; also 'paper-full').")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {tokens, entities, attributes, knowledge, "
                                                         "caption} as JSON.")] = False,
    caption: Annotated[str | None, typer.Option(help="A caption of the post's image (models with a "
                                                   "'caption' channel).")] = None,
    kg: KgOption = None,
    image: Annotated[Path | None, typer.Option(help="The post's image: its ImageNet attributes are shown, and "
                                                    "used by models with image channels.")] = None,
) -> None:
    """Tag one post and print its entities (and its image's attributes and the knowledge used)."""
    from mner.data import tokenize
    from mner.pipeline import Pipeline

    if not tokenize(text):
        fail("--text is empty: expected the words of a post")
    result = Pipeline(model, kg).tag(text, image=image, caption=caption)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    from mner.data import Span

    spans = [Span(**e) for e in result["entities"]]
    typer.echo(highlight(result["tokens"], spans))
    for s in spans:
        typer.echo(f"  {s.type:<6} {s.text}  (tokens {s.start}–{s.end})")
    for line in context_lines(result, given_caption=caption):
        typer.echo(line)


def context_lines(result: dict, given_caption: str | None = None) -> list[str]:
    """Lines for the image attributes, a caption made from them, and the knowledge used (none if absent)."""
    lines = []
    if result["attributes"]:
        lines.append("attributes: " + ", ".join(f"{a['label']} {a['probability']:.2f}"
                                               for a in result["attributes"]))
    if result["caption"] and not given_caption:
        lines.append(f"caption (from the image attributes): {result['caption']}")
    found = result["knowledge"]
    if found and found["path"] != "none":
        entity = f"{found['label'] or found['entity']} ({found['entity']})" if found["entity"] else found["mention"]
        how = {"image": f"image match, hop {found['hop']}, similarity {found['similarity']}",
               "text": "text match", "name": "first-name rule"}.get(found["path"], found["path"])
        triples = "; ".join(" ".join(t) for t in found["triples"])
        lines.append(f"knowledge ({how}): {entity}: {triples}")
    return lines


@app.command()
@user_errors
def demo(
    model: Annotated[Path | None, typer.Option(help="Model folder, or a packaged model by name (default: the shipped 'default'; also 'paper-full').")] = None,
) -> None:
    """Tag the example posts that ship with mner and print their entities."""
    from mner.data import iter_jsonl_posts
    from mner.tagger import load_tagger

    tagger = load_tagger(model)
    posts = [p for _, p in iter_jsonl_posts(EXAMPLES)]
    typer.echo(f"model: {model or 'shipped default'}  ({', '.join(tagger.config.channels)})\n")
    for post, spans in zip(posts, tagger.predict(posts)):
        typer.echo(highlight(list(post.tokens), spans))
        typer.echo("  " + ("; ".join(f"{s.text} → {s.type}" for s in spans) or "no entities") + "\n")


def load_context(captions: Path | None, kg: Path | None):
    """(captions by image id or None, an open KG store or None) from the command's flags."""
    from mner.data import read_captions

    caption_map = read_captions(captions) if captions else None
    store = None
    if kg is not None:
        from mner.knowledge import open_kg

        store = open_kg(kg)
    return caption_map, store


def open_images(path: Path | None, backbone: str):
    """The image feature cache, checked against the backbone the model expects (or None)."""
    if path is None:
        return None
    from mner.vision import FeatureCache

    return FeatureCache.open(path, backbone=backbone)


def with_context(posts, caption_map, store, name: str | None):
    """Posts joined with captions and knowledge; reports what was found on stderr."""
    if caption_map is None and store is None:
        return posts
    from mner.prepare import attach_context

    posts, report = attach_context(posts, caption_map, store)
    if name:
        typer.echo(f"{name}: {report.summary()}", err=True)
    return posts


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
