"""The robustness table of issue #22: models tagging Twitter-2015 and Twitter-2017 test with the published LLM
knowledge rewritten per post (other formats, weakened, another post's, none), beside the text model.

Usage: python benchmarks/bench_robustness.py --group default=pkg:default --group "recipe=runs/a/seed1,runs/a/seed2"
       --text pkg:text [--sets t15 t17] [--threads 1] [--report FILE | --update]

A group is one model or the seeds of one recipe (their F1 averaged, mean ± std); a model folder may hold a text path
(``mner combine --text-model``), which then tags the posts whose context names nothing in them, as a user's
would. Each condition rewrites every test post's context (the set's ``llm_knowledge.tsv``, its entity list read
with ``mner.channels.entities.read_entities`` where the condition needs it) and tags the test file with it, as
``mner evaluate --context-file`` does; random conditions use fixed seeds.

Rows: none (no context); published; json (``{"entities": [{"name", "type"}], "reasoning"}``); lines (one
``Name - kind`` a line, then the reasoning); semicolons (``Entities: X - kind; Y - kind``); generic (every kind
"entity"); drop30 (each entity left out with p = 0.3); spurious (2 names of another post's list added); shuffled
(another post's whole context); prose (the reasoning alone); lower (lower-cased).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

from runs import mean_std, publish, report_option, report_path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {"t15": DATA / "twitter2015", "t17": DATA / "twitter2017"}
# Entity lists in shapes chat models write, flattened to one line as a context file keeps them (issue #30): each
# keeps the published names and kinds (``names`` keeps the names alone). ``chat_text`` writes them.
CHAT_FORMS = (
    "md_bold",
    "names",
    "dash_runs",
    "yaml",
    "md_table",
    "kind_first",
    "numbered_bold",
    "json_kind_first",
    "xml",
    "arrows",
    "sentences",
    "kind_brackets",
)
CONDITIONS = (
    "none",
    "published",
    "json",
    "lines",
    "semicolons",
    "generic",
    "drop30",
    "spurious",
    "shuffled",
    "prose",
    "lower",
    *CHAT_FORMS,
)
SEED = 22
CACHE_VERSION = 4


def list_text(entities, form: str, reasoning: str | None) -> str:
    """An entity list written the way ``form`` says (the published numbered list, JSON, one a line, ...)."""
    if form == "published":
        body = "".join(f"{i}. {n} ({k or 'entity'})" for i, (n, k) in enumerate(entities, 1))
        return f"Named entities:{body}" + (f"Reasoning:{reasoning}" if reasoning else "")
    if form == "json":
        items = [{"name": n, "type": k} for n, k in entities]
        return json.dumps({"entities": items, "reasoning": reasoning or ""}, ensure_ascii=False)
    if form == "lines":
        return "\n".join(f"{n} - {k}" if k else n for n, k in entities) + (
            f"\n\nReasoning: {reasoning}" if reasoning else ""
        )
    if form == "semicolons":
        return "Entities: " + "; ".join(f"{n} - {k}" if k else n for n, k in entities)
    raise ValueError(form)


def chat_text(entities, form: str, reasoning: str | None) -> str:
    """An entity list in one of ``CHAT_FORMS``, on one line (a context file keeps line breaks as spaces)."""
    why = f" Reasoning: {reasoning}" if reasoning else ""
    kinds = [(n, k or "entity") for n, k in entities]
    if form == "md_bold":
        return "Here are the named entities: " + " ".join(f"- **{n}** – {k}" for n, k in kinds) + why
    if form == "names":
        return ", ".join(n for n, _ in entities)
    if form == "dash_runs":
        return " ".join(f"{n} - {k};" for n, k in kinds)
    if form == "yaml":
        return "entities: " + " ".join(f"- name: {n} type: {k}" for n, k in kinds)
    if form == "md_table":
        return "| Entity | Type | |---|---| " + " ".join(f"| {n} | {k} |" for n, k in kinds) + why
    if form == "kind_first":
        return " ".join(f"- {k}: {n}" for n, k in kinds)
    if form == "numbered_bold":
        return " ".join(f"{i}. **{n}**: {k}" for i, (n, k) in enumerate(kinds, 1)) + why
    if form == "json_kind_first":
        items = ", ".join(json.dumps({"category": k, "entity": n}, ensure_ascii=False) for n, k in kinds)
        return f"```json [{items}] ```"
    if form == "xml":
        return "<entities>" + "".join(f'<entity type="{k}">{n}</entity>' for n, k in kinds) + "</entities>"
    if form == "arrows":
        return " | ".join(f"{n} → {k}" for n, k in kinds)
    if form == "sentences":
        return " ".join(f"{n} is a {k}." for n, k in kinds) + why
    if form == "kind_brackets":
        return " ".join(f"[{k}] {n}" for n, k in kinds)
    raise ValueError(form)


def conditions(contexts: dict[str, str], order: list[str]) -> dict[str, dict[str, str | None]]:
    """Each condition's context by image id (None: no context), from the published texts."""
    from mner.channels.entities import prose_text, read_entities

    parsed = {k: read_entities(v) for k, v in contexts.items()}
    reasoning = {k: prose_text(v).strip() if "reasoning" in v.lower() else None for k, v in contexts.items()}
    keys = [k for k in order if k in contexts]
    out: dict[str, dict[str, str | None]] = {c: {} for c in CONDITIONS}
    rng = random.Random(SEED)
    shuffled = keys[:]
    rng.shuffle(shuffled)
    other = {k: shuffled[(i + 1) % len(shuffled)] for i, k in enumerate(shuffled)}  # never the post itself
    for k in keys:
        text, entities, why = contexts[k], parsed[k], reasoning[k]
        out["none"][k] = None
        out["published"][k] = text
        out["lower"][k] = text.lower()
        out["shuffled"][k] = contexts[other[k]]
        out["prose"][k] = why if why is not None else text
        if not entities:  # nothing to rewrite: the text as it is
            for c in ("json", "lines", "semicolons", "generic", "drop30", "spurious", *CHAT_FORMS):
                out[c][k] = text
            continue
        out["json"][k] = list_text(entities, "json", why)
        out["lines"][k] = list_text(entities, "lines", why)
        out["semicolons"][k] = list_text(entities, "semicolons", None)
        for form in CHAT_FORMS:
            out[form][k] = chat_text(entities, form, why)
        out["generic"][k] = list_text([(n, "entity") for n, _ in entities], "published", why)
        out["drop30"][k] = list_text([e for e in entities if rng.random() >= 0.3], "published", why)
        names = {n for n, _ in entities}
        extra = [e for e in parsed[other[k]] if e[0] not in names][:2]
        out["spurious"][k] = list_text(entities + extra, "published", why)
    return out


def evaluate_model(model: str, sets: list[str], threads: int) -> dict:
    """{set: {condition: scores}} of one model (a folder, or pkg:NAME), cached beside it under runs/."""
    from mner.data import read_keyed_tsv
    from mner.evaluate import entity_scores
    from mner.labels import read_gold
    from mner.model.folder import resolve_model
    from mner.runtime.runners import load_runner

    folder = resolve_model(model)
    cache = ROOT / "runs" / "robustness" / (str(folder.resolve()).strip("/").replace("/", "_") + ".json")
    done = json.loads(cache.read_text()) if cache.exists() else {}
    if done.get("version") != CACHE_VERSION or done.get("weights") != _weights_hash(folder):
        done = {"version": CACHE_VERSION, "weights": _weights_hash(folder)}
    todo = [s for s in sets if s not in done]
    if todo:
        runner = load_runner(folder, "auto", threads)
        runner.use_features(threads, cached=True)  # a frozen encoder's features: computed once a post
    for name in todo:
        start = time.perf_counter()
        posts = read_gold(SETS[name] / "test.txt")  # Twitter-2017's MISC read as OTHER, as mner evaluate does
        contexts, _ = read_keyed_tsv(SETS[name] / "llm_knowledge.tsv", ("image_id",), "knowledge")
        rewritten = conditions(contexts, [p.image for p in posts])
        gold = [list(p.tags) for p in posts]
        reads = [CONDITIONS[0]] if "context" not in runner.config.channels else list(CONDITIONS)
        done[name] = {
            c: entity_scores(
                gold,
                runner.predict_tags(
                    [dataclasses.replace(p, context=rewritten[c].get(p.image)) for p in posts]
                ),
            ).to_json()
            for c in reads
        }
        print(f"{model} {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(done, indent=1) + "\n")
    return done


def _weights_hash(folder: Path) -> str:
    """The weights' SHA-256 of the folder and of its text and untyped paths (a changed path is a new model)."""
    record = json.loads((folder / "config.json").read_text())
    paths = [record.get(f"{key}_path") for key in ("text", "untyped")]
    inner = [_weights_hash(folder / p) for p in dict.fromkeys(paths) if p]
    return ":".join([record.get("weights_sha256", ""), *inner])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--group", action="append", required=True, help="NAME=MODEL[,MODEL...] (seeds of one recipe)"
    )
    parser.add_argument("--text", default="pkg:text", help="the text model to compare with (its 'none' row)")
    parser.add_argument("--sets", nargs="+", default=["t15", "t17"], choices=list(SETS))
    parser.add_argument("--threads", type=int, default=1)
    report_option(parser, "robustness.md")
    args = parser.parse_args()
    args.report = report_path(args, "robustness.md")
    groups = {name: models.split(",") for name, models in (g.split("=", 1) for g in args.group)}
    results = {
        name: [evaluate_model(m, args.sets, args.threads) for m in models] for name, models in groups.items()
    }
    text = evaluate_model(args.text, args.sets, args.threads)
    header = " | ".join(f"{name} {s.upper()}" for name in groups for s in args.sets)
    lines = [f"| context given | {header} |", "|---|" + "---|" * (len(groups) * len(args.sets))]
    for condition in CONDITIONS:
        cells = [
            mean_std([r[s][condition]["f1"] for r in results[name]])
            if condition in results[name][0][s]
            else "–"
            for name in groups
            for s in args.sets
        ]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    cells = [f"{text[s]['none']['f1']:.2f}" for _ in groups for s in args.sets]
    lines.append(f"| the text model `{args.text}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Groups: "
        + "; ".join(f"{name} = {', '.join(f'`{m}`' for m in models)}" for name, models in groups.items()),
        "",
        "Command: `python benchmarks/bench_robustness.py "
        + " ".join(f"--group {name}={','.join(models)}" for name, models in groups.items())
        + f" --text {args.text} --sets {' '.join(args.sets)} --threads {args.threads}`",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
