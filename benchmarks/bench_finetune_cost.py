"""What fine-tuning all-mpnet-base-v2's top layers would cost a seed on this CPU, measured before building it.

Usage: python benchmarks/bench_finetune_cost.py [--threads 2] [--batches 12] [--batch-size 20] [--epochs 20]
       [--report FILE | --update]

Issue #31 asks for fine-tuning "the top one or two layers only if the frozen rows leave a gap and it fits the
machine" (a seed in ≤ 30 min on 2 threads). For k = 1, 2 and 12 trained layers this times, in PyTorch fp32 on real
training batches (Twitter-2015 train + Twitter-2017 train posts in a seeded random order, as training draws them;
each post's word pieces as mner's frozen path makes them, ``@``/``#`` joined): a forward and backward pass through
the top k layers and an AdamW step on them, the layers below run beforehand with no gradient (what a cache of
their states would hand the trainer), and a forward pass through the top k alone (scoring the dev set each epoch).
The loss is a stand-in (the mean square of the last layer's states): the BiLSTM-CRF head on top costs what it
costs the frozen rows today and comes on top of these figures. Also timed: the whole encoder forward with no
gradient (the one-off extraction, in PyTorch fp32). Extrapolated to an epoch (training posts of the joint set, the
dev posts scored once) and a seed of ``--epochs`` epochs (the frozen configs' cap is 20, patience 5).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

from runs import publish, report_option, report_path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def piece_rows(tokenizer, posts) -> list[list[int]]:
    """Each post's encoder input, as the frozen path runs a post alone: [CLS] pieces [SEP], cut to 512."""
    from mner.inputs.markers import join

    rows = []
    for post in posts:
        words = join(post.tokens)[0]
        flat = [p for word in tokenizer.pieces(list(words)) for p in word][:510]
        rows.append([tokenizer.cls_id, *flat, tokenizer.sep_id])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=12, help="timed batches per row")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    report_option(parser, "finetune_cost.md")
    args = parser.parse_args()
    args.report = report_path(args, "finetune_cost.md")
    if not (DATA / "twitter2015" / "train.txt").exists():
        sys.exit(f"Twitter-2015 not found under {DATA}")
    import torch
    from transformers import AutoModel

    from mner.data import read_conll
    from mner.inputs.frozen import PieceTokenizer, encoder_folder
    from mner.inputs.pieces import quiet_transformers

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    folder = encoder_folder("mpnet")
    tokenizer = PieceTokenizer(folder)
    train = read_conll(DATA / "twitter2015" / "train.txt") + read_conll(DATA / "twitter2017" / "train.txt")
    dev = read_conll(DATA / "twitter2015" / "valid.txt")
    n17 = len(read_conll(DATA / "twitter2017" / "train.txt"))
    n_train = len(train) - n17 + round(0.9 * n17)  # the joint set: T15 train + 90 % of T17 train
    n_dev = len(dev) + n17 - round(0.9 * n17)  # T15 valid + the rest of T17 train
    rows = piece_rows(tokenizer, train)
    random.Random(1).shuffle(rows)
    pieces_all = sum(len(r) for r in rows)
    with quiet_transformers():
        model = AutoModel.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, add_pooling_layer=False
        )
    layers = model.encoder.layer

    def batch(i: int):
        chunk = rows[i * args.batch_size : (i + 1) * args.batch_size]
        width = max(len(r) for r in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, r in enumerate(chunk):
            ids[j, : len(r)], mask[j, : len(r)] = torch.tensor(r), 1
        additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        return ids, additive, len(chunk)

    def below(ids, additive, k: int):
        """The states entering the top k layers (no gradient): what a cache would hold."""
        with torch.no_grad():
            h = model.embeddings(input_ids=ids)
            bias = model.encoder.compute_position_bias(h)
            for layer in layers[: len(layers) - k]:
                h = layer(h, additive, bias)[0]
        return h, bias

    def top(h, additive, bias, k: int):
        for layer in layers[len(layers) - k :]:
            h = layer(h, additive, bias)[0]
        return h

    results = []
    timed = range(1, args.batches + 1)  # batch 0 warms up
    # the whole encoder forward, no gradient (extraction)
    model.eval()
    seconds, posts = [], 0
    for i in [0, *timed]:
        ids, additive, n = batch(i)
        start = time.perf_counter()
        below(ids, additive, 0)
        if i:
            seconds.append(time.perf_counter() - start)
            posts += n
    extract_ms = 1000 * sum(seconds) / posts
    print(f"extraction (12 layers forward, fp32): {extract_ms:.1f} ms a post", flush=True)
    for k in (1, 2, 12):
        model.train()
        for p in model.parameters():
            p.requires_grad_(False)
        trained = [p for layer in layers[len(layers) - k :] for p in layer.parameters()]
        if k == len(layers):
            trained += list(model.embeddings.parameters())
            trained += list(model.encoder.relative_attention_bias.parameters())
        for p in trained:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(trained, lr=2e-5)
        step_s, forward_s, posts = [], [], 0
        for i in [0, *timed]:
            ids, additive, n = batch(i)
            if k == len(layers):  # everything trained: the embeddings' forward is part of the step
                start = time.perf_counter()
                h = model.embeddings(input_ids=ids)
                out = top(h, additive, model.encoder.compute_position_bias(h), k)
            else:
                h, bias = below(ids, additive, k)
                start = time.perf_counter()
                out = top(h, additive, bias, k)
            out.pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step = time.perf_counter() - start
            model.eval()
            with torch.no_grad():
                h, bias = below(ids, additive, k) if k < len(layers) else (None, None)
                start = time.perf_counter()
                if k < len(layers):
                    top(h, additive, bias, k)
                else:
                    below(ids, additive, 0)
                fwd = time.perf_counter() - start
            model.train()
            if i:
                step_s.append(step)
                forward_s.append(fwd)
                posts += n
        step_ms, fwd_ms = 1000 * sum(step_s) / posts, 1000 * sum(forward_s) / posts
        epoch_min = (n_train * step_ms + n_dev * fwd_ms) / 60_000
        results.append((k, step_ms, fwd_ms, epoch_min, statistics.median(step_s)))
        print(
            f"top {k}: step {step_ms:.1f} ms a post, dev forward {fwd_ms:.1f} ms a post, "
            f"epoch {epoch_min:.1f} min, {args.epochs} epochs {args.epochs * epoch_min:.0f} min",
            flush=True,
        )
    state_gb = pieces_all / len(train) * (n_train + n_dev) * 768 * 2 / 1e9
    lines = [
        "## Fine-tuning MPNet's top layers: the encoder's cost a seed (PyTorch fp32, measured)",
        "",
        (
            f"{args.batches} batches of {args.batch_size} training posts a row (after one warm-up), "
            f"{args.threads} threads, {os.cpu_count()} cores; joint training set {n_train:,} posts, dev {n_dev:,}; "
            f"{pieces_all / len(train):.1f} pieces a training post on average."
        ),
        "",
        (
            "| layers trained | train step ms a post | dev forward ms a post | epoch min | "
            f"{args.epochs} epochs min | median batch s |"
        ),
        "|---|---|---|---|---|---|",
        *(
            f"| {k} | {s:.1f} | {f:.1f} | {e:.1f} | {args.epochs * e:.0f} | {b:.2f} |"
            for k, s, f, e, b in results
        ),
        "",
        (
            f"Extraction (the whole encoder forward, no gradient, fp32): {extract_ms:.1f} ms a post. A cache of "
            f"one layer's states for the training and dev posts (fp16): {state_gb:.2f} GB a layer kept. The "
            "BiLSTM-CRF head's own time (the frozen rows' minutes a seed) comes on top."
        ),
        "",
        (
            f"Command: `python benchmarks/bench_finetune_cost.py --threads {args.threads} --batches "
            f"{args.batches} --batch-size {args.batch_size} --epochs {args.epochs}`"
        ),
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
