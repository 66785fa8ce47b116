"""One model, scored on Twitter-2015 test under each input condition a user can give it.

Usage: python benchmarks/bench_conditions.py --model DIR [--kg KG.sqlite] [--report FILE]

Conditions: text only; + caption (the BLIP-2 caption of the tweet image, image_captions.tsv); + knowledge
(KG isA triples, text-candidate policy); + caption + knowledge. A channel the model lacks is skipped; a
channel the model has but the input lacks is masked (how `mner predict` treats a post without it). Each
row is `mner evaluate --model DIR --data test.txt [--captions TSV] [--kg KG] --json`.
The tweet pixels are not available here, so "text + image" (attributes from pixels) cannot be measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "twitter2015"
TYPES = ("PER", "LOC", "ORG", "OTHER")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--kg", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--report", type=Path, default=None)
    args = parser.parse_args()
    channels = json.loads((args.model / "config.json").read_text())["model"]["channels"]
    conditions = [("text only", [])]
    if "caption" in channels:
        conditions.append(("text + caption", ["--captions", str(args.data / "image_captions.tsv")]))
    if "knowledge" in channels and args.kg:
        conditions.append(("text + knowledge", ["--kg", str(args.kg)]))
        if "caption" in channels:
            conditions.append(
                (
                    "text + caption + knowledge",
                    ["--captions", str(args.data / "image_captions.tsv"), "--kg", str(args.kg)],
                )
            )
    lines = [
        f"Twitter-2015 test ({args.data / 'test.txt'}), model `{args.model}` (channels: {', '.join(channels)}):",
        "",
        "| input given | PER F1 | LOC F1 | ORG F1 | OTHER F1 | P | R | F1 | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    mner = Path(sys.executable).parent / "mner"
    for name, flags in conditions:
        cmd = [
            str(mner),
            "evaluate",
            "--model",
            str(args.model),
            "--data",
            str(args.data / "test.txt"),
            *flags,
            "--json",
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        s = json.loads(out.strip().splitlines()[-1])
        shown = "mner evaluate --model MODEL --data test.txt " + " ".join(
            f.replace(str(args.data) + "/", "")
            if f.startswith(str(args.data))
            else ("KG" if f == str(args.kg) else f)
            for f in flags
        )
        lines.append(
            f"| {name} | "
            + " | ".join(f"{s['per_type'][t]['f1']:.2f}" for t in TYPES)
            + f" | {s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} | `{shown.strip()}` |"
        )
        print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    if args.report:
        args.report.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
