"""Train the text-only BiLSTM-CRF baseline on Twitter-2015 with 3 seeds; print and record test scores.

Usage: python benchmarks/bench_baseline.py [--data ../shared/data/twitter2015] [--seeds 1 2 3] [--out runs/baseline]

Each seed runs `mner train --train train.txt --dev valid.txt --test test.txt --seed S --out OUT/seedS`
(dev-F1 checkpoint selection, test scored once), then the script writes runs/baseline.md (benchmarks/baseline.md with --update).
Channels: text only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from runs import mean_std, publish, report_option, report_path

ROOT = Path(__file__).resolve().parents[1]
PAPER = [  # the paper's Table 2 rows (Chen et al., DASFAA 2021)
    ("BiLSTM-CRF (paper Table 2)", 76.77, 72.56, 41.33, 26.80, 68.14, 61.09, 64.42),
    ("T-NER (paper Table 2)", 83.64, 76.18, 50.26, 34.56, 69.54, 68.65, 69.09),
    ("Paper's full model (Table 2)", 84.28, 79.43, 58.97, 41.47, 74.78, 71.82, 73.27),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "twitter2015")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "baseline")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per training (1 is steadier when the CPU is shared)",
    )
    report_option(parser, "baseline.md")
    args = parser.parse_args()
    args.report = report_path(args, "baseline.md")
    mner = Path(sys.executable).parent / "mner"
    runs = []
    for seed in args.seeds:
        out = args.out / f"seed{seed}"
        cmd = [
            str(mner),
            "train",
            "--train",
            str(args.data / "train.txt"),
            "--dev",
            str(args.data / "valid.txt"),
            "--test",
            str(args.data / "test.txt"),
            "--seed",
            str(seed),
            "--threads",
            str(args.threads),
            "--out",
            str(out),
        ]
        print("$", " ".join(cmd), flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        record = json.loads((out / "config.json").read_text())
        runs.append(
            {
                "seed": seed,
                "wall": time.perf_counter() - start,
                **record["training"],
                "test": record["scores"]["test"],
            }
        )
    rows = []
    for key in ("PER", "LOC", "ORG", "OTHER"):
        rows.append(mean_std([r["test"]["per_type"][key]["f1"] for r in runs]))
    for key in ("precision", "recall", "f1"):
        rows.append(mean_std([r["test"][key] for r in runs]))
    per_epoch = statistics.median(r["seconds_per_epoch"] for r in runs)
    lines = [
        "## Text-only baseline (BiLSTM-CRF) on Twitter-2015 test",
        "",
        "Channels: **text** only (GloVe-6B-50d + char-CNN + word shape → BiLSTM → CRF). Trained on train.txt,",
        (
            "checkpoint chosen on valid.txt, test.txt scored once; entity-level micro scores over 4 types, "
            f"{runs[0]['test']['gold_entities']} gold test entities."
        ),
        "",
        "| system | PER F1 | LOC F1 | ORG F1 | OTHER F1 | P | R | F1 |",
        "|---|---|---|---|---|---|---|---|",
        f"| mner text-only BiLSTM-CRF, seeds {', '.join(map(str, args.seeds))} (mean ± std) | "
        + " | ".join(rows)
        + " |",
    ]
    lines += [f"| {name} | " + " | ".join(f"{v:.2f}" for v in vals) + " |" for name, *vals in PAPER]
    lines += [
        "",
        "| seed | best epoch | epochs run | dev F1 | test F1 | s/epoch | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['seed']} | {r['best_epoch']} | {r['epochs_run']} | {r['dev_f1']:.2f} | {r['test']['f1']:.2f} | "
        f"{r['seconds_per_epoch']:.1f} | {r['wall']:.0f} |"
        for r in runs
    ]
    lines += [
        "",
        f"Median seconds per epoch on this 2-core CPU with {args.threads} torch thread(s): {per_epoch:.1f}.",
        "",
        (
            f"Command: `python benchmarks/bench_baseline.py --seeds {' '.join(map(str, args.seeds))} "
            f"--threads {args.threads}`"
        ),
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
