"""One `mner train` run per (config, seed) on Twitter-2015, reused when its model folder already holds
test scores, so an interrupted benchmark resumes where it stopped."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path


def mean_std(values: list[float]) -> str:
    """``mean ± std`` over seeds; one seed shows its value alone (no ± 0 that looks like a spread)."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def train_once(config: Path, seed: int, out: Path, data: Path, kg: Path | None, threads: int) -> dict:
    """Train (or reuse) ``out``; the captions and KG flags follow the config's channels."""
    record_file = out / "config.json"
    if not (record_file.exists() and "scores" in json.loads(record_file.read_text())):
        channels = tomllib.loads(config.read_text()).get("model", {}).get("channels", ["text"])
        cmd = [str(Path(sys.executable).parent / "mner"), "train", "--config", str(config),
               "--train", str(data / "train.txt"), "--dev", str(data / "valid.txt"), "--test", str(data / "test.txt"),
               "--seed", str(seed), "--threads", str(threads), "--out", str(out)]
        if "caption" in channels:
            cmd += ["--captions", str(data / "image_captions.tsv")]
        if "knowledge" in channels:
            if kg is None:
                raise SystemExit(f"{config.name} uses the knowledge channel: a KG file is needed")
            cmd += ["--kg", str(kg)]
        print("$", " ".join(cmd), flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        (out / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    record = json.loads(record_file.read_text())
    wall = out / "wall_seconds.txt"
    return {"seed": seed, **record["training"], "test": record["scores"]["test"],
            "wall": float(wall.read_text()) if wall.exists() else float("nan")}


def build_kg(path: Path, kg_sources: Path) -> None:
    """The benchmarks' KG: FB15k-237 + DB15K + MMKG ids + CoDEx from ../shared/kg (about 5 s)."""
    if path.exists():
        return
    cmd = [str(Path(sys.executable).parent / "mner"), "kg", "build", "--fb15k237", str(kg_sources / "fb15k237"),
           "--db15k", str(kg_sources / "db15k"), "--mmkb", str(kg_sources / "mmkb"), "--codex", str(kg_sources / "codex"),
           "--out", str(path)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
