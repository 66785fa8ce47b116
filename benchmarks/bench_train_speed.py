"""Training cost of each config on this CPU: seconds per training step on real Twitter-2015 batches, the
epoch and the whole run that implies, and the peak memory of the training process.

Usage: python benchmarks/bench_train_speed.py [--configs baseline minilm-text ...] [--steps 40] [--threads 1]
       [--kg KG.sqlite] [--report benchmarks/train_speed.md]

Each config runs in its own process (so its peak resident memory is its own): it reads Twitter-2015 train with
the captions and KG its channels need, builds the model from the config, takes 3 untimed warm-up steps, then
times ``--steps`` steps (batching, forward, backward, optimiser step) on batches of the shuffled training set.
An epoch = seconds a step × steps an epoch; the whole run also counts the config's epochs (at most) and one dev
scoring an epoch, timed on the dev set with the untrained model. This is cheaper than full trainings and
measures the same loop that `mner train` runs.
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
from pathlib import Path

from runs import filled_posts

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "twitter2015"
DEFAULT = [
    "baseline",
    "bilstm-context",
    "paper-full",
    "minilm-text",
    "minilm-context",
    "minilm-fusion",
    "minilm-lstm-text",
    "minilm-lstm-context",
]


def child(config: Path, steps: int, threads: int, data: Path, kg: Path | None) -> dict:
    """One config's measurement (runs in a fresh process): ``mner.training.trainer.Trainer``'s own steps."""
    import torch

    from mner.training.runconfig import read_run_config
    from mner.training.trainer import Trainer

    torch.set_num_threads(threads)
    run = read_run_config(config)
    run.train.progress = False
    channels = run.model.get("channels", ["text"])
    train, dev = filled_posts(data, channels, kg)
    trainer = Trainer(train, dev, run)
    cfg = run.train
    steps_per_epoch = -(-len(train) // cfg.batch_size)
    order = list(range(len(train)))
    random.Random(cfg.seed).shuffle(order)
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    times = []
    for n, idx in enumerate(batches[: steps + 3]):
        start = time.perf_counter()
        trainer.step([train[i] for i in idx])  # batching, forward, backward, optimiser step
        if n >= 3:
            times.append(time.perf_counter() - start)
    start = time.perf_counter()
    trainer.model.predict_tags(dev)
    dev_seconds = time.perf_counter() - start
    step = sum(times) / len(times)
    return {
        "config": config.stem,
        "steps": len(times),
        "s_per_step": step,
        "s_per_epoch": step * steps_per_epoch,
        "dev_seconds": dev_seconds,
        "epochs": cfg.epochs,
        "max_minutes": cfg.epochs * (step * steps_per_epoch + dev_seconds) / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--kg", type=Path, default=ROOT / "runs" / "study" / "kg.sqlite")
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.threads, args.data, args.kg)))
        return
    if not (args.data / "train.txt").exists():
        sys.exit(f"Twitter-2015 not found at {args.data}: pass --data")
    rows = []
    for name in args.configs:
        config = ROOT / "configs" / f"{name}.toml"
        channels = tomllib.loads(config.read_text()).get("model", {}).get("channels", ["text"])
        if "knowledge" in channels and not args.kg.exists():
            sys.exit(f"{name} needs a KG: pass --kg (mner kg build, see benchmarks/runs.py)")
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(config),
            "--steps",
            str(args.steps),
            "--threads",
            str(args.threads),
            "--data",
            str(args.data),
            "--kg",
            str(args.kg),
        ]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
        )
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(
                f"{name}: the measurement failed (exit {os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}"
            )
        r = json.loads(out.strip().splitlines()[-1])
        r["rss_gb"] = usage.ru_maxrss / 2**20  # KiB on Linux
        print(
            f"{name}: {r['s_per_step']:.3f} s/step, {r['s_per_epoch']:.0f} s/epoch, {r['rss_gb']:.1f} GB",
            flush=True,
        )
        rows.append(r)
    lines = [
        "## Training cost on this CPU",
        "",
        (
            f"{args.threads} torch thread(s) on {os.cpu_count()} cores; {args.steps} timed steps per config (after 3 "
            "warm-up steps) on shuffled Twitter-2015 train batches; epoch = s/step × steps an epoch; dev = scoring the "
            "1,000 dev posts once; at most = the config's epochs × (epoch + dev); GB = peak resident memory."
        ),
        "",
        "| config | s/step | s/epoch | dev s | epochs (max) | at most, min | GB |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| `{r['config']}` | {r['s_per_step']:.3f} | {r['s_per_epoch']:.0f} | {r['dev_seconds']:.0f} | "
            f"{r['epochs']} | {r['max_minutes']:.0f} | {r['rss_gb']:.1f} |"
            for r in rows
        ],
        "",
        (
            f"Command: `python benchmarks/bench_train_speed.py --configs {' '.join(args.configs)} --steps {args.steps} "
            f"--threads {args.threads}`"
        ),
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.report:
        args.report.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
