"""The paper's model on Twitter-2015 (issue #5): channel conditions × seeds, printed beside Tables 2 and 3.

Usage: python benchmarks/bench_study.py [--conditions text caption knowledge full] [--seeds 1 2 3]
       [--threads 2] [--out runs/study] [--report FILE | --update]

Each (condition, seed) runs `mner train --config configs/paper-<condition>.toml --train train.txt --dev
valid.txt --test test.txt --seed S [--captions image_captions.tsv] [--kg KG]` (dev-F1 checkpoint selection,
test scored once). A run whose model folder already holds test scores is reused, so an interrupted study
resumes. The KG is built once from ../shared/kg (FB15k-237 + DB15K + MMKG ids + CoDEx) with `mner kg build`.

The tweet images are not available here: the image-derived channel is the BLIP-2 caption of each image
(image_captions.tsv), never pixels. Knowledge comes from the text-candidate policy (no image vector).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from runs import build_kg, mean_std, publish, report_option, report_path, train_once

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TYPES = ("PER", "LOC", "ORG", "OTHER")
CONDITIONS = {  # name: (row label, channels used)
    "text": ("text only (fusion over the text alone)", "text"),
    "caption": ("+ caption as attribute words", "text + caption"),
    "caption-words": ("+ caption words as their own channel", "text + caption"),
    "knowledge": ("+ knowledge (KG isA triples, text candidates)", "text + knowledge"),
    "full": ("+ caption + knowledge (full model here)", "text + caption + knowledge"),
    "full-mpnet": (
        "+ caption + knowledge, frozen MPNet features beside GloVe",
        "text (+ MPNet features) + caption + knowledge",
    ),
}
PAPER = [  # (row, channels, PER, LOC, ORG, OTHER, P, R, F1); Table 3 gives no P and R
    ("paper Table 2: BiLSTM-CRF", "text", 76.77, 72.56, 41.33, 26.80, 68.14, 61.09, 64.42),
    (
        "paper Table 2: full model (with image)",
        "text + image + attributes + knowledge",
        84.28,
        79.43,
        58.97,
        41.47,
        74.78,
        71.82,
        73.27,
    ),
    (
        "paper Table 3: without image",
        "text + attributes + knowledge",
        83.51,
        77.26,
        58.06,
        37.03,
        None,
        None,
        72.09,
    ),
]


def run_one(condition: str, seed: int, args, kg: Path) -> dict:
    run = train_once(
        ROOT / "configs" / f"paper-{condition}.toml",
        seed,
        args.out / condition / f"seed{seed}",
        args.data,
        kg,
        args.threads,
    )
    return {"condition": condition, **run}


def inference_rate(model: Path, args, kg: Path) -> dict:
    """Posts/s of the tagger alone on prepared test posts (captions and knowledge joined beforehand)."""
    import torch

    from mner.channels.sources import ChannelSources
    from mner.data import read_conll
    from mner.model.torch_model import load_torch_model

    torch.set_num_threads(args.threads)
    posts = read_conll(args.data / "test.txt")
    start = time.perf_counter()
    sources = ChannelSources.open({"caption": args.data / "image_captions.tsv", "knowledge": kg})
    posts = sources.fill(posts, ["text", "caption", "knowledge"]).posts
    prepare = time.perf_counter() - start
    tagger = load_torch_model(model)
    tagger.predict_tags(posts[:64])  # warm-up
    start = time.perf_counter()
    tagger.predict_tags(posts)
    seconds = time.perf_counter() - start
    return {"posts": len(posts), "rate": len(posts) / seconds, "prepare_ms": 1000 * prepare / len(posts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "twitter2015")
    parser.add_argument(
        "--conditions", nargs="+", default=["text", "caption", "knowledge", "full"], choices=list(CONDITIONS)
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--compare",
        nargs="*",
        default=[],
        choices=list(CONDITIONS),
        help="conditions run with the first seed only, as one-seed comparison rows",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "study")
    report_option(parser, "study.md")
    args = parser.parse_args()
    args.report = report_path(args, "study.md")
    if not (args.data / "train.txt").exists():
        sys.exit(f"Twitter-2015 not found at {args.data}: pass --data")
    kg = args.out / "kg.sqlite"
    args.out.mkdir(parents=True, exist_ok=True)
    if {"knowledge", "full", "full-mpnet"} & set(args.conditions):
        build_kg(kg, SHARED / "kg")
    runs = [
        run_one(c, s, args, kg) for s in args.seeds for c in args.conditions
    ]  # seed-major: balanced if cut short
    runs += [run_one(c, args.seeds[0], args, kg) for c in args.compare]
    lines = [
        "## The paper's model on Twitter-2015 test: channels switched on one by one",
        "",
        (
            "Image-derived channel = the BLIP-2 **caption** of the tweet image (`image_captions.tsv`); the tweet "
            "pixels are not available here, so no row uses regions or ImageNet attributes. Knowledge = isA triples "
            "of the KG entity found for a text mention (text-candidate policy, KG built from FB15k-237 + DB15K + "
            "MMKG ids + CoDEx). Every row is the same network (BiLSTM → Eq. 2–14 fusion, width 64 → CRF) with "
            f"the other channels switched off; seeds {', '.join(map(str, args.seeds))}, mean ± std, dev-F1 "
            "checkpoint, test scored once."
        ),
        "",
        "| condition | channels | PER F1 | LOC F1 | ORG F1 | OTHER F1 | P | R | F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for condition in [*args.conditions, *args.compare]:
        rs = [r for r in runs if r["condition"] == condition]
        cells = [mean_std([r["test"]["per_type"][t]["f1"] for r in rs]) for t in TYPES]
        cells += [mean_std([r["test"][k] for r in rs]) for k in ("precision", "recall", "f1")]
        label, channels = CONDITIONS[condition]
        lines.append(f"| {label} (n={len(rs)}) | {channels} | " + " | ".join(cells) + " |")
    for name, channels, *values in PAPER:
        lines.append(
            f"| {name} | {channels} | " + " | ".join("–" if v is None else f"{v:.2f}" for v in values) + " |"
        )
    lines += [
        "",
        "| condition | seed | best epoch | epochs run | dev F1 | test F1 | s/epoch | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['condition']} | {r['seed']} | {r['best_epoch']} | {r['epochs_run']} | {r['dev_f1']:.2f} | "
        f"{r['test']['f1']:.2f} | {r['seconds_per_epoch']:.1f} | {r['wall']:.0f} |"
        for r in runs
    ]
    lines += [
        "",
        (
            f"Seconds per epoch are training only (dev scoring excluded), {args.threads} torch thread(s) on this "
            "2-core CPU; wall s = the whole `mner train` run including data loading, context joining and dev/test scoring."
        ),
        "",
        (
            f"Command: `python benchmarks/bench_study.py --conditions {' '.join(args.conditions)} "
            f"--seeds {' '.join(map(str, args.seeds))} --threads {args.threads}"
            + (f" --compare {' '.join(args.compare)}" if args.compare else "")
            + "`"
        ),
        "",
    ]
    full = args.out / "full" / f"seed{args.seeds[0]}"
    if (full / "model.safetensors").exists():
        speed = inference_rate(full, args, kg)
        lines += [
            (
                f"Inference, full model ({full.relative_to(ROOT) if full.is_relative_to(ROOT) else full}), "
                f"{args.threads} torch thread(s): the tagger alone tags {speed['rate']:.0f} posts/s on the "
                f"{speed['posts']} prepared test posts (batches of 64); preparing them (caption join + KG "
                f"knowledge) took {speed['prepare_ms']:.1f} ms a post beforehand."
            ),
            "",
        ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
