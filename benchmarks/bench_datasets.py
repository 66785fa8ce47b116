"""The Twitter-2015 / Twitter-2017 study of issue #23: each config trained on T15, on T17 and on both, each seed
scored on both test sets with and without the LLM context, beside the anchors.

Usage: python benchmarks/bench_datasets.py --configs baseline bilstm-llm-robust [--data t15 t17 joint]
       [--seeds 1 2 3] [--text-config baseline] [--threads 1] [--device cpu|cuda] [--jobs 1]
       [--out runs/datasets] [--report FILE | --update]

Training (`mner train`, one process a run, reused when its folder holds test scores):
- t15: train `twitter2015/train.txt`, dev `twitter2015/valid.txt` (with its context for a context config).
- t17: Twitter-2017's valid split has no LLM knowledge, so a context model cannot be selected on it: 10 % of
  `twitter2017/train.txt` (337 posts, a fixed shuffle, seed 22) is held out as dev **with** its context
  (`runs/datasets/data/t17-dev10.txt`), the other 90 % is trained on (`t17-train90.txt`); every config of this
  study uses the same split, text-only ones included, so that the rows compare. T17 valid is not used.
- joint: T15 train + T17 train90, dev T15 valid + T17 dev10, the context files of both sets.
The context files are the published LLM knowledge (`llm_knowledge.tsv` of each set, PGIM's ChatGPT text).

Scoring (`Runner.predict_tags` on the model folder, as `mner evaluate --json` does): T15 test (5,207 gold
entities) and T17 test (1,351; its MISC read as OTHER), each with the set's LLM context and without any. A context
config is also scored with its text path: `mner combine --member CONTEXT_SEED_i --text-model TEXT_SEED_i` (the
posts whose context names nothing in them go to the text model of the same data and seed), the shipped recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runs import mean_std, publish, report_option, report_path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
T15, T17 = DATA / "twitter2015", DATA / "twitter2017"
TYPES = ("PER", "LOC", "ORG", "OTHER")
SPLIT_SEED = 22
ANCHORS = {  # test F1 reported by their papers (DESIGN.md), each trained on that set
    "t15": [
        ("UMT", 73.41),
        ("HVPNeT", 75.32),
        ("XLM-R-large (text)", 77.04),
        ("ITA", 78.03),
        ("PGIM", 79.33),
    ],
    "t17": [("UMT", 85.31), ("UMGF", 85.51), ("XLM-R-large (text)", 89.11), ("ITA", 89.75), ("PGIM", 91.43)],
}


def t17_split(folder: Path) -> tuple[Path, Path]:
    """(train90, dev10): Twitter-2017 train with 10 % of its posts held out as dev (a fixed shuffle)."""
    train90, dev10 = folder / "t17-train90.txt", folder / "t17-dev10.txt"
    if train90.exists() and dev10.exists():
        return train90, dev10
    blocks = [b for b in (T17 / "train.txt").read_text(encoding="utf-8").split("\n\n") if b.strip()]
    order = list(range(len(blocks)))
    random.Random(SPLIT_SEED).shuffle(order)
    held = set(order[: len(blocks) // 10])
    folder.mkdir(parents=True, exist_ok=True)
    dev10.write_text("".join(blocks[i].strip("\n") + "\n\n" for i in sorted(held)), encoding="utf-8")
    train90.write_text(
        "".join(blocks[i].strip("\n") + "\n\n" for i in range(len(blocks)) if i not in held), encoding="utf-8"
    )
    return train90, dev10


def data_files(name: str, split_folder: Path) -> dict[str, list[Path]]:
    train90, dev10 = t17_split(split_folder)
    return {
        "t15": {
            "train": [T15 / "train.txt"],
            "dev": [T15 / "valid.txt"],
            "context": [T15 / "llm_knowledge.tsv"],
        },
        "t17": {"train": [train90], "dev": [dev10], "context": [T17 / "llm_knowledge.tsv"]},
        "joint": {
            "train": [T15 / "train.txt", train90],
            "dev": [T15 / "valid.txt", dev10],
            "context": [T15 / "llm_knowledge.tsv", T17 / "llm_knowledge.tsv"],
        },
    }[name]


def reads_context(config: Path) -> bool:
    return "context" in tomllib.loads(config.read_text()).get("model", {}).get("channels", ["text"])


def train(config: Path, data: str, seed: int, out: Path, args) -> Path:
    """``mner train`` of one (config, data, seed), unless its folder holds test scores already."""
    record = out / "config.json"
    if record.exists() and "scores" in json.loads(record.read_text()):
        return out
    files = data_files(data, args.out / "data")
    cmd = [sys.executable, "-m", "mner", "train", "--config", str(config), "--seed", str(seed)]
    cmd += [x for path in files["train"] for x in ("--train", str(path))]
    cmd += [x for path in files["dev"] for x in ("--dev", str(path))]
    cmd += ["--test", str(T15 / "test.txt"), "--test", str(T17 / "test.txt")]
    if reads_context(config):  # both sets' knowledge: the card scores both test sets with it
        both = [T15 / "llm_knowledge.tsv", T17 / "llm_knowledge.tsv"]
        cmd += [x for path in both for x in ("--context-file", str(path))]
    cmd += ["--threads", str(args.threads), "--out", str(out)]
    if args.device != "cpu":
        cmd += ["--device", args.device]
    out.mkdir(parents=True, exist_ok=True)
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    with open(out / "train.log", "w") as log:
        subprocess.run(cmd, check=True, stderr=log, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    (out / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return out


def with_paths(context_model: Path, text_model: Path, out: Path, untyped_model: Path | None = None) -> Path:
    """``mner combine --member CONTEXT --text-model TEXT [--untyped-model UNTYPED] --out OUT`` (once)."""
    if not (out / "onnx.json").exists():
        cmd = [
            sys.executable,
            "-m",
            "mner",
            "combine",
            "--member",
            str(context_model),
            "--text-model",
            str(text_model),
        ]
        cmd += ["--untyped-model", str(untyped_model)] if untyped_model is not None else []
        subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True)
    return out


def scores(model: Path, threads: int, features: str = "model") -> dict:
    """{"t15": {"context": s, "none": s}, "t17": {...}} for a model folder (cached in it); a model reading a frozen
    encoder's features reads them through its int8 graph (as tagging does) or the fp32 one (as training did)."""
    cache = model / ("datasets.json" if features == "model" else f"datasets-{features}.json")
    if cache.exists():
        return json.loads(cache.read_text())
    from mner.channels.sources import ChannelSources
    from mner.evaluate import entity_scores
    from mner.labels import read_gold
    from mner.runtime.runners import load_runner

    runner = load_runner(model, "auto", threads)
    runner.use_features(threads, quantized=None if features == "model" else features == "int8", cached=True)
    out = {}
    for name, folder in (("t15", T15), ("t17", T17)):
        posts = read_gold(folder / "test.txt")  # Twitter-2017's MISC read as OTHER, as mner evaluate does
        gold = [list(p.tags) for p in posts]
        with_context = (
            ChannelSources.open({"context": folder / "llm_knowledge.tsv"}).fill(posts, ["context"]).posts
        )
        out[name] = {
            "context": entity_scores(gold, runner.predict_tags(with_context)).to_json(),
            "none": entity_scores(gold, runner.predict_tags(posts)).to_json(),
        }
    cache.write_text(json.dumps(out, indent=1) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", required=True)
    parser.add_argument("--text-config", default="baseline", help="the text path of each context config")
    parser.add_argument(
        "--untyped-config",
        default=None,
        help="the untyped path: rows of each context config with all three paths",
    )
    parser.add_argument("--data", nargs="+", default=["t15", "t17", "joint"], choices=["t15", "t17", "joint"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (1 on a CPU)")
    parser.add_argument(
        "--features",
        default="model",
        choices=["model", "int8", "fp32"],
        help="a frozen encoder's graph at scoring: the model's own (features_graph, as tagging), int8 or fp32",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "datasets")
    report_option(parser, "datasets.md")
    args = parser.parse_args()
    args.report = report_path(args, "datasets.md")
    if not (T15 / "train.txt").exists() or not (T17 / "train.txt").exists():
        sys.exit(f"Twitter-2015 and Twitter-2017 not found under {DATA}")
    configs = list(dict.fromkeys([args.text_config, *args.configs, args.untyped_config]))
    configs = [c for c in configs if c is not None]
    jobs = [(c, d, s) for c in configs for d in args.data for s in args.seeds]
    folder = lambda c, d, s: args.out / c / d / f"seed{s}"
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda j: train(ROOT / "configs" / f"{j[0]}.toml", j[1], j[2], folder(*j), args), jobs))
    rows = []  # (label, data, [scores per seed])
    for config in configs:
        for data in args.data:
            runs = [scores(folder(config, data, s), args.threads, args.features) for s in args.seeds]
            rows.append((f"`{config}`", data, runs))
            if config in (args.text_config, args.untyped_config) or not reads_context(
                ROOT / "configs" / f"{config}.toml"
            ):
                continue
            text = lambda s, d=data: folder(args.text_config, d, s)
            routed = [
                with_paths(
                    folder(config, data, s), text(s), folder(config, data, s).with_name(f"seed{s}+text")
                )
                for s in args.seeds
            ]
            rows.append(
                (f"`{config}` + text path", data, [scores(r, args.threads, args.features) for r in routed])
            )
            if args.untyped_config is not None:
                untyped = lambda s, d=data: folder(args.untyped_config, d, s)
                routed = [
                    with_paths(
                        folder(config, data, s),
                        text(s),
                        folder(config, data, s).with_name(f"seed{s}+paths"),
                        untyped(s),
                    )
                    for s in args.seeds
                ]
                label = f"`{config}` + untyped path (`{args.untyped_config}`) + text path"
                rows.append((label, data, [scores(r, args.threads, args.features) for r in routed]))
    publish(report(rows, args), args.report)


def report(rows, args) -> list[str]:
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "| model (trained on) | T15 test, LLM context | T15 test, no context | T17 test, LLM context | T17 test, no context |",
        "|---|---|---|---|---|",
    ]
    for label, data, runs in rows:
        cells = [mean_std([r[s][c]["f1"] for r in runs]) for s in ("t15", "t17") for c in ("context", "none")]
        lines.append(
            f"| {label} ({data.upper() if data != 'joint' else 'T15+T17'}) | " + " | ".join(cells) + " |"
        )
    for s in ("t15", "t17"):
        lines.append(
            f"| anchors ({s.upper()}, reported) | "
            + ", ".join(f"{n} {f}" for n, f in ANCHORS[s])
            + " | | | |"
        )
    lines += ["", "Per type (F1) and P/R, with the LLM context / without:", ""]
    lines += [
        "| model (trained on) | test | P | R | F1 | " + " | ".join(TYPES) + " |",
        "|---|---|---|---|---|" + "---|" * len(TYPES),
    ]
    for label, data, runs in rows:
        for s in ("t15", "t17"):
            for c in ("context", "none"):
                overall = [mean_std([r[s][c][key] for r in runs]) for key in ("precision", "recall", "f1")]
                types = [mean_std([r[s][c]["per_type"][t]["f1"] for r in runs]) for t in TYPES]
                lines.append(
                    f"| {label} ({data}) | {s.upper()} {'LLM context' if c == 'context' else 'no context'} | "
                    + " | ".join(overall + types)
                    + " |"
                )
    lines += [
        "",
        f"Seeds {seeds}; trained with `--threads {args.threads}`"
        + (f" on `{args.device}`" if args.device != "cpu" else " on this CPU")
        + ". Command: `python benchmarks/bench_datasets.py --configs "
        + " ".join(args.configs)
        + f" --text-config {args.text_config}"
        + (f" --untyped-config {args.untyped_config}" if args.untyped_config else "")
        + f" --data {' '.join(args.data)} --seeds {seeds} --threads {args.threads}"
        + (f" --features {args.features}`" if args.features != "model" else "`"),
    ]
    return lines


if __name__ == "__main__":
    main()
