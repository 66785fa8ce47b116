"""The encoder ladder of issue #7 on Twitter-2015: each config × seeds, beside the field's anchors.

Usage: python benchmarks/bench_ladder.py [--configs baseline bilstm-context minilm-text minilm-context]
       [--seeds 1 2 3] [--threads 1] [--device cpu|cuda] [--jobs 1] [--kg KG.sqlite] [--out runs/ladder]
       [--report FILE | --update]

Runs go one at a time by default (a CPU benchmark); ``--jobs N`` trains N at once (on a GPU machine).
Each row says the hardware its runs were trained on, read from the models' records.

Each (config, seed) is `mner train --config configs/<config>.toml --train train.txt --dev valid.txt --test
test.txt --seed S [--captions image_captions.tsv] [--kg KG]` (flags from the config's channels), reused when
its model folder already holds test scores. The MiniLM configs need `pip install -e ".[transformer]"`.
Image-derived text = the BLIP-2 caption of the tweet image (the pixels are not available here).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runs import build_kg, mean_std, publish, report_option, report_path, test_without_context, train_once

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TYPES = ("PER", "LOC", "ORG", "OTHER")
ANCHORS = [  # Twitter-2015 test F1 reported by their papers (DESIGN.md / issue #7)
    ("BERT-CRF", "text", 71.81),
    ("the paper's full model (Table 2)", "text + image", 73.27),
    ("UMT", "text + image", 73.41),
    ("UMGF", "text + image", 74.85),
    ("HVPNeT", "text + image", 75.32),
    ("XLM-R-large", "text", 77.04),
    ("ITA", "text + image-derived text", 78.03),
    ("PGIM", "text + image-derived text", 79.33),
]


def channels_of(config: Path) -> str:
    import tomllib

    from mner.config import migrate_keys

    model = migrate_keys(tomllib.loads(config.read_text()).get("model", {}))  # flat keys of before too
    channels = ["context (LLM)" if c == "context" else c for c in model.get("channels", ["text"])]
    return (
        " + ".join(channels)
        + (" (as text)" if model.get("words_after_post") else "")
        + (" (aligned)" if model.get("context", {}).get("alignment") else "")
        + (" (fusion)" if model.get("fusion") else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs", nargs="+", default=["baseline", "bilstm-context", "minilm-text", "minilm-context"]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to train on a GPU")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (1 on a CPU)")
    parser.add_argument("--kg", type=Path, help="a KG file to use instead of building one from ../shared/kg")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "twitter2015")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ladder")
    report_option(parser, "ladder.md")
    args = parser.parse_args()
    args.report = report_path(args, "ladder.md")
    if not (args.data / "train.txt").exists():
        sys.exit(f"Twitter-2015 not found at {args.data}: pass --data")
    args.out.mkdir(parents=True, exist_ok=True)
    kg = args.kg
    if kg is None:
        kg = args.out / "kg.sqlite"
        build_kg(kg, SHARED / "kg")
    jobs = [(name, seed) for name in args.configs for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = dict(
            zip(
                jobs,
                pool.map(
                    lambda job: train_once(
                        ROOT / "configs" / f"{job[0]}.toml",
                        job[1],
                        args.out / job[0] / f"seed{job[1]}",
                        args.data,
                        kg,
                        args.threads,
                        args.device,
                    ),
                    jobs,
                ),
            )
        )
    rows = []
    for name in args.configs:
        config = ROOT / "configs" / f"{name}.toml"
        runs = [done[(name, seed)] for seed in args.seeds]
        cells = [mean_std([r["test"]["per_type"][t]["f1"] for r in runs]) for t in TYPES]
        cells += [mean_std([r["test"][k] for r in runs]) for k in ("precision", "recall", "f1")]
        per_epoch = statistics.median(r["seconds_per_epoch"] for r in runs)
        walls = [r["wall"] for r in runs if r["wall"] == r["wall"]]  # NaN: a run made outside this script
        wall = f"{statistics.median(walls) / 60:.0f}" if walls else "–"
        rss = [r["rss_mb"] for r in runs if r["rss_mb"] == r["rss_mb"]]
        memory = f"{max(rss) / 1024:.1f}" if rss else "–"
        if any("gpu_peak_mb" in r for r in runs):
            memory += f" (GPU {max(r.get('gpu_peak_mb', 0) for r in runs) / 1024:.1f})"
        hardware = "; ".join(
            sorted({r.get("hardware", "this CPU (record predates the field)") for r in runs})
        )
        epochs = "/".join(str(r["epochs_run"]) for r in runs)
        without = "–"
        if "context" in channels_of(config):
            plain = [
                test_without_context(args.out / name / f"seed{seed}", args.data, args.threads)
                for seed in args.seeds
            ]
            without = mean_std([r["f1"] for r in plain])
        rows.append(
            f"| mner `{name}` (n={len(runs)}) | {channels_of(config)} | "
            + " | ".join(cells)
            + f" | {without} | {per_epoch:.0f} | {epochs} | {wall} | {memory} | {hardware} |"
        )
    flags = (
        f" --threads {args.threads}"
        + (f" --device {args.device}" if args.device != "cpu" else "")
        + (f" --jobs {args.jobs}" if args.jobs != 1 else "")
    )
    lines = [
        "## The encoder ladder on Twitter-2015 test",
        "",
        (
            f"Seeds {', '.join(map(str, args.seeds))}, mean ± std, dev-F1 checkpoint, test scored once; caption = BLIP-2 "
            "caption of the tweet image, knowledge = KG isA triples (text candidates), context = the LLM knowledge "
            "of each post (llm_knowledge.tsv); F1 no ctx = the same models tagging test with no channel but the text. "
            "s/epoch = median training "
            "seconds an epoch (dev scoring excluded); epochs = epochs run per seed; min = median whole run; "
            f"GB = peak resident memory of a training process (and the GPU's peak allocation). {args.jobs} training(s) "
            "at once."
        ),
        "",
        (
            "| system | channels | PER F1 | LOC F1 | ORG F1 | OTHER F1 | P | R | F1 | F1 no ctx | s/epoch | epochs "
            "| min | GB | trained on |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        *[
            f"| {name} (reported) | {channels} | | | | | | | {f1:.2f} | | | | | | |"
            for name, channels, f1 in ANCHORS
        ],
        "",
        (
            f"Command: `python benchmarks/bench_ladder.py --configs {' '.join(args.configs)} "
            f"--seeds {' '.join(map(str, args.seeds))}{flags}`"
        ),
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
