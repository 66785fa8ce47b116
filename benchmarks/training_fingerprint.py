"""A training's fingerprint: a fixed-seed 2-epoch training of a config on Twitter-2015, its first ten step
losses and its dev F1 after each epoch, so a refactoring can show it left training unchanged.

Usage: python benchmarks/training_fingerprint.py [--configs baseline paper-full minilm-lstm-text] [--epochs 2]
       [--seed 1] [--threads 1] [--kg KG.sqlite] [--out runs/fingerprint.json] [--compare OLD.json]

The channels a config reads come from ../shared/data/twitter2015 (captions) and the KG (built from
../shared/kg by `mner kg build` when --kg names a missing file). With ``--compare``, every figure is checked
against an earlier fingerprint and the differences are printed; the exit status is 1 if any differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

from runs import build_kg, filled_posts

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "twitter2015"


def fingerprint(config: Path, epochs: int, seed: int, threads: int, kg: Path) -> dict:
    """Train ``config`` for ``epochs`` epochs; its first ten step losses and dev F1 per epoch."""
    import torch

    from mner.training.runconfig import read_run_config
    from mner.training.trainer import Trainer

    torch.set_num_threads(threads)
    run = read_run_config(config)
    run.train.epochs, run.train.seed, run.train.threads, run.train.progress = epochs, seed, threads, False
    channels = run.model.get("channels", ["text"])
    train_posts, dev_posts = filled_posts(DATA, channels, kg)
    losses: list[float] = []
    trainer = Trainer(train_posts, dev_posts, run, on_step=lambda loss: losses.append(loss))
    history = trainer.fit()
    return {
        "config": config.stem,
        "epochs": epochs,
        "seed": seed,
        "first_losses": losses[:10],
        "dev_f1": [round(row["dev_f1"], 4) for row in history],
        "epoch_loss": [round(row["loss"], 6) for row in history],
    }


def compare(new: dict, old: dict) -> list[str]:
    """Every figure of ``old`` that ``new`` does not reproduce exactly."""
    diffs = []
    for name, before in old.items():
        after = new.get(name)
        if after is None:
            continue
        for key in ("first_losses", "dev_f1", "epoch_loss"):
            if before[key] != after[key]:
                diffs.append(f"{name} {key}: before {before[key]}, after {after[key]}")
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["baseline", "paper-full", "minilm-lstm-text"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kg", type=Path, default=ROOT / "runs" / "study" / "kg.sqlite")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "fingerprint.json")
    parser.add_argument("--compare", type=Path, help="an earlier fingerprint to check these figures against")
    args = parser.parse_args()
    if not (DATA / "train.txt").exists():
        sys.exit(f"Twitter-2015 not found at {DATA}")
    needs_kg = any(
        "knowledge"
        in tomllib.loads((ROOT / "configs" / f"{c}.toml").read_text()).get("model", {}).get("channels", [])
        for c in args.configs
    )
    if needs_kg:
        args.kg.parent.mkdir(parents=True, exist_ok=True)
        build_kg(args.kg, SHARED / "kg")
    results = {}
    for name in args.configs:
        results[name] = fingerprint(
            ROOT / "configs" / f"{name}.toml", args.epochs, args.seed, args.threads, args.kg
        )
        print(json.dumps(results[name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    if args.compare:
        diffs = compare(results, json.loads(args.compare.read_text(encoding="utf-8")))
        print("\n".join(diffs) if diffs else f"every figure of {args.compare} reproduced exactly")
        sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
