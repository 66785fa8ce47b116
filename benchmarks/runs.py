"""One `mner train` run per (config, seed) on Twitter-2015, reused when its model folder already holds
test scores, so an interrupted benchmark resumes where it stopped."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def report_option(parser, name: str) -> None:
    """``--report FILE`` and ``--update``: a benchmark writes its report under ``runs/`` (ignored by git) unless
    ``--update`` tells it to rewrite its tracked table, ``benchmarks/NAME``."""
    parser.add_argument("--report", type=Path, default=None, help=f"Report file (default runs/{name}).")
    parser.add_argument(
        "--update",
        action="store_true",
        help=f"Rewrite the tracked benchmarks/{name} (a measured run to publish).",
    )


def report_path(args, name: str) -> Path:
    """Where ``report_option``'s arguments say the report goes (``runs/`` made if missing)."""
    if args.report is not None:
        return args.report
    if args.update:
        return ROOT / "benchmarks" / name
    (ROOT / "runs").mkdir(exist_ok=True)
    return ROOT / "runs" / name


def publish(lines: list[str], report: Path) -> None:
    """Print a benchmark's Markdown report and write it to ``report``."""
    text = "\n".join(lines)
    print(text)
    report.write_text(text, encoding="utf-8")


def mean_std(values: list[float]) -> str:
    """``mean ± std`` over seeds; one seed shows its value alone (no ± 0 that looks like a spread)."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def train_once(
    config: Path, seed: int, out: Path, data: Path, kg: Path | None, threads: int, device: str = "cpu"
) -> dict:
    """Train (or reuse) ``out``; the captions and KG flags follow the config's channels. The run's wall time and
    its peak resident memory (the training process's, from wait4) are kept beside the model."""
    record_file = out / "config.json"
    if not (record_file.exists() and "scores" in json.loads(record_file.read_text())):
        channels = tomllib.loads(config.read_text()).get("model", {}).get("channels", ["text"])
        cmd = [
            sys.executable,
            "-m",
            "mner",
            "train",
            "--config",
            str(config),
            "--train",
            str(data / "train.txt"),
            "--dev",
            str(data / "valid.txt"),
            "--test",
            str(data / "test.txt"),
            "--seed",
            str(seed),
            "--threads",
            str(threads),
            "--out",
            str(out),
        ]
        if device != "cpu":
            cmd += ["--device", device]
        if "caption" in channels:
            cmd += ["--captions", str(data / "image_captions.tsv")]
        if "context" in channels:
            cmd += ["--context-file", str(data / "llm_knowledge.tsv")]
        if "knowledge" in channels:
            if kg is None:
                raise SystemExit(f"{config.name} uses the knowledge channel: a KG file is needed")
            cmd += ["--kg", str(kg)]
        print("$", " ".join(cmd), flush=True)
        start = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "train.log", "w") as log:
            proc = subprocess.Popen(cmd, stderr=log)
            _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(
                f"{' '.join(cmd)} failed (exit {os.waitstatus_to_exitcode(status)}); see {out / 'train.log'}"
            )
        (out / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
        (out / "peak_rss_mb.txt").write_text(
            f"{usage.ru_maxrss / 1024:.0f}\n"
        )  # ru_maxrss is in KiB on Linux
    record = json.loads(record_file.read_text())
    wall, rss = out / "wall_seconds.txt", out / "peak_rss_mb.txt"
    return {
        "seed": seed,
        **record["training"],
        "test": record["scores"]["test"],
        "wall": float(wall.read_text()) if wall.exists() else float("nan"),
        "rss_mb": float(rss.read_text()) if rss.exists() else float("nan"),
    }


def build_kg(path: Path, kg_sources: Path) -> None:
    """The benchmarks' KG: FB15k-237 + DB15K + MMKG ids + CoDEx from ../shared/kg (about 5 s)."""
    if path.exists():
        return
    cmd = [
        sys.executable,
        "-m",
        "mner",
        "kg",
        "build",
        "--fb15k237",
        str(kg_sources / "fb15k237"),
        "--db15k",
        str(kg_sources / "db15k"),
        "--mmkb",
        str(kg_sources / "mmkb"),
        "--codex",
        str(kg_sources / "codex"),
        "--out",
        str(path),
    ]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def filled_posts(data: Path, channels: list[str], kg: Path | None, splits=("train", "valid")) -> list:
    """Twitter-2015 splits with the channels a config reads filled (``mner.channels.sources``): the BLIP-2 captions for
    a "caption" channel, the KG's knowledge for a "knowledge" channel."""
    from mner.channels.sources import ChannelSources
    from mner.data import read_conll

    sources = ChannelSources.open(
        {
            "caption": data / "image_captions.tsv" if "caption" in channels else None,
            "knowledge": kg if "knowledge" in channels else None,
        }
    )
    return [sources.fill(read_conll(data / f"{split}.txt"), channels).posts for split in splits]


def test_without_context(out: Path, data: Path, threads: int) -> dict:
    """Twitter-2015 test scores of a trained model tagging with its channels but no context (cached beside it):
    ``mner evaluate --model OUT --data test.txt --json`` without ``--context-file``."""
    cached = out / "test_without_context.json"
    if not cached.exists():
        cmd = [
            sys.executable,
            "-m",
            "mner",
            "evaluate",
            "--model",
            str(out),
            "--data",
            str(data / "test.txt"),
            "--json",
        ]
        print("$", " ".join(cmd), flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        result = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        cached.write_text(result.stdout.strip().splitlines()[-1] + "\n")
    return json.loads(cached.read_text())
