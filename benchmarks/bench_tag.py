"""End-to-end tagging speed: `mner tag` on N posts each with a tweet-sized JPEG, beside a UMT-shaped pipeline.

Usage: python benchmarks/bench_tag.py [--posts 1000] [--umt-posts 100] [--threads 2] [--kg KG.sqlite]
       [--model DIR ...] [--attributes] [--with-context] [--report FILE | --update]

mner: `mner tag --in posts.jsonl --out tagged.jsonl [--kg KG]` as a subprocess: JPEG decode + EfficientNet-Lite
(for a model that reads the image: image channels, a caption from it, a KG's image match; a model that reads none
leaves the images unopened) + KG lookup + the tagger, in batches. Posts/s is counted from the command's own start
to its end (model loading included) and, separately, over the tagging loop alone (the command's summary line).
Several ``--model`` folders are timed one after another in the same run, on the same posts; ``--attributes`` times
each again with ``mner tag --attributes`` (every image decoded and encoded for its classes). ``--with-context``
gives each post its LLM knowledge from ``llm_knowledge.tsv`` (the "context" field), as a user of a context model
would.

UMT-shaped pipeline (Yu et al., 2020): ResNet-152 over the 224×224 image → 7×7 regions, a BERT-base encoder
(12 layers, 768 wide, 12 heads, 30,522-word-piece embeddings) over the word pieces, one cross-modal
attention layer and a linear tagger, built with random weights since only their cost matters, run on the
same posts and images with the same JPEG decoding, batch 16, in inference mode.

Texts are Twitter-2015 test posts; images are distinct 1200×675 JPEGs (quality 85, the size of tweet photos)
cut from scikit-image's bundled photos (benchmarks/photos.py), one file per post.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from photos import tweet_photos
from runs import publish, report_option, report_path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def make_posts(folder: Path, n: int, data: Path, seed: int = 0, with_context: bool = False) -> Path:
    """Write n JPEGs and posts.jsonl (text from Twitter-2015 test, image relative to the file, and with
    ``with_context`` the post's LLM knowledge) into folder."""
    from mner.data import read_conll, read_keyed_tsv

    folder.mkdir(parents=True, exist_ok=True)
    posts = read_conll(data / "test.txt")
    contexts = read_keyed_tsv(data / "llm_knowledge.tsv")[0] if with_context else {}
    lines = []
    for i, image in enumerate(tweet_photos(n, (1200, 675), seed)):
        image.save(folder / f"{i:05d}.jpg", quality=85)
        post = posts[i % len(posts)]
        line = {"id": f"p{i}", "text": " ".join(post.tokens), "image": f"{i:05d}.jpg"}
        if post.image in contexts:
            line["context"] = contexts[post.image]
        lines.append(json.dumps(line, ensure_ascii=False))
    (folder / "posts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "posts.jsonl"


def run_mner(posts: Path, out: Path, args, model: Path | None, attributes: bool = False) -> dict:
    if out.exists():
        out.unlink()
    cmd = [
        str(Path(sys.executable).parent / "mner"),
        "tag",
        "--in",
        str(posts),
        "--out",
        str(out),
        "--quiet",
        "--threads",
        str(args.threads),
    ]
    if args.kg:
        cmd += ["--kg", str(args.kg)]
    if model:
        cmd += ["--model", str(model)]
    if attributes:
        cmd += ["--attributes"]
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    print(done.stderr.strip(), flush=True)
    lines = out.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    errors = sum("error" in r for r in records)
    loop = re.findall(r"([\d.]+) posts/s", done.stderr)
    return {
        "posts": len(lines),
        "errors": errors,
        "unread": sum("attributes" in r and r["attributes"] is None for r in records),  # images not opened
        "wall": wall,
        "loop_rate": float(loop[-1]) if loop else None,
    }


def bottleneck_resnet152():
    """ResNet-152 (bottleneck blocks 3-8-36-3), random weights: the UMT/UMGF image encoder's cost."""
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, width: int, stride: int):
            super().__init__()
            cout = width * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, stride, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )
            self.skip = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.body(x) + self.skip(x))

    layers = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 8, 2), (256, 36, 2), (512, 3, 2)):
        for b in range(blocks):
            layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
            cin = width * 4
    return nn.Sequential(*layers).eval()  # (B, 3, 224, 224) → (B, 2048, 7, 7)


class UmtShaped:
    """ResNet-152 regions + BERT-base text + one cross-modal layer + linear tags, random weights."""

    def __init__(self):
        import torch
        from torch import nn

        torch.manual_seed(0)
        self.resnet = bottleneck_resnet152()
        self.word_pieces = nn.Embedding(30522, 768)
        self.positions = nn.Embedding(512, 768)
        layer = nn.TransformerEncoderLayer(768, 12, 3072, activation="gelu", batch_first=True)
        self.bert = nn.TransformerEncoder(layer, 12, enable_nested_tensor=False).eval()
        self.region_proj = nn.Linear(2048, 768)
        self.cross = nn.MultiheadAttention(768, 12, batch_first=True)
        self.tagger = nn.Linear(768, 9)

    def __call__(self, pixels, piece_ids):
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0  # shape: (B, 3, 224, 224)
            regions = self.region_proj(self.resnet(x).flatten(2).transpose(1, 2))  # shape: (B, 49, 768)
            pos = torch.arange(piece_ids.shape[1])
            h = self.bert(self.word_pieces(piece_ids) + self.positions(pos))  # shape: (B, L, 768)
            fused, _ = self.cross(h, regions, regions)
            return self.tagger(h + fused).argmax(-1)


def run_umt(posts_file: Path, n: int, batch: int = 16) -> dict:
    import numpy as np
    import torch

    from mner.vision.decode import load_pixels
    from mner.vision.encoder import EncoderConfig

    config = EncoderConfig.for_backbone("lite0", resize="center_crop")  # 224×224, as ResNet's ImageNet input
    rows = [json.loads(line) for line in posts_file.read_text(encoding="utf-8").splitlines()][:n]
    model = UmtShaped()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        pixels = np.stack([load_pixels(posts_file.parent / r["image"], config) for r in chunk])
        pieces = max(
            int(1.3 * len(r["text"].split())) + 2 for r in chunk
        )  # word pieces ≈ 1.3 per token + CLS/SEP
        model(pixels, torch.from_numpy(rng.integers(1000, 30000, size=(len(chunk), pieces))))
    seconds = time.perf_counter() - start
    return {"posts": len(rows), "seconds": seconds, "rate": len(rows) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument(
        "--umt-posts", type=int, default=100, help="posts for the UMT-shaped pipeline (it is slow)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kg", type=Path, default=None)
    parser.add_argument("--model", type=Path, action="append", help="a model folder (repeat to time several)")
    parser.add_argument(
        "--attributes", action="store_true", help="time each model again with mner tag --attributes"
    )
    parser.add_argument("--with-context", action="store_true", help="each post with its LLM knowledge")
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "twitter2015")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_tag")
    report_option(parser, "tag.md")
    args = parser.parse_args()
    args.report = report_path(args, "tag.md")
    if args.umt_posts < 1:
        parser.error("--umt-posts: at least 1 (the side-by-side ratio is what this script measures)")
    import torch

    torch.set_num_threads(args.threads)
    posts = make_posts(args.work / "posts", args.posts, args.data, with_context=args.with_context)
    sizes = [p.stat().st_size for p in (args.work / "posts").glob("*.jpg")]
    models = [(m, a) for m in args.model or [None] for a in ((False, True) if args.attributes else (False,))]
    runs = [run_mner(posts, args.work / "tagged.jsonl", args, model, a) for model, a in models]
    umt = run_umt(posts, args.umt_posts)
    mner, mner_rate = runs[0], runs[0]["posts"] / runs[0]["wall"]
    lines = [
        "## End-to-end tagging speed (`mner tag`) and a UMT-shaped pipeline on the same posts",
        "",
        (
            f"{args.posts} posts (Twitter-2015 test texts), each with its own 1200×675 JPEG ({min(sizes) // 1024}-{max(sizes) // 1024} KB); {os.cpu_count()} CPU cores, {args.threads} torch threads. mner model: "
            f"{', '.join(map(str, args.model)) if args.model else 'shipped default'}; KG: {args.kg or 'none'}; "
            f"{'each post with its LLM knowledge as context' if args.with_context else 'no context'}."
        ),
        "",
        "| pipeline | posts | errors | posts/s (whole command) | posts/s (tagging loop) |",
        "|---|---|---|---|---|",
        *(
            f"| mner tag{f' --model {model}' if model else ''}{' --attributes' if a else ''} "
            f"({'tagger, images not read' if run['unread'] else 'decode + EfficientNet-Lite0 + KG + tagger'}) | "
            f"{run['posts']} | {run['errors']} | {run['posts'] / run['wall']:.1f} | "
            f"{run['loop_rate'] if run['loop_rate'] is not None else '–'} |"
            for (model, a), run in zip(models, runs)
        ),
        (
            f"| UMT-shaped (decode + ResNet-152 + BERT-base + cross-attention), random weights | {umt['posts']} | 0 | – | "
            f"{umt['rate']:.2f} |"
        ),
        "",
        f"mner / UMT-shaped throughput (tagging loops): {((mner['loop_rate'] or mner_rate) / umt['rate']):.1f}×.",
        "",
        f"Command: `python benchmarks/bench_tag.py --posts {args.posts} --umt-posts {args.umt_posts} --threads {args.threads}"
        + (f" --kg {args.kg}" if args.kg else "")
        + "".join(f" --model {m}" for m in args.model or [])
        + (" --attributes" if args.attributes else "")
        + (" --with-context" if args.with_context else "")
        + "`",
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
