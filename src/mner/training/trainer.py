"""Training: Adam on the CRF negative log-likelihood, dev-F1 checkpoint selection, early stopping.

``Trainer`` is the run in parts that ``mner train`` and the speed benchmark share: its constructor sets
everything up (vocabularies from the training posts, the network, the optimiser groups the network
declares, the schedule), ``step`` is one optimisation step on a batch of posts, ``epoch`` one pass with
dev scoring, ``fit`` the epochs with early stopping and the best weights restored.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from mner.channels.readers import READERS
from mner.config import ModelConfig, migrate_keys
from mner.data import MnerInputError, Post
from mner.evaluate import entity_scores
from mner.labels import BENCHMARK_TYPES, LabelSet, entity_types
from mner.model.network import as_tensors
from mner.model.torch_model import TorchModel
from mner.training.runconfig import RunConfig, TrainConfig

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mner.vision import ImageFeatures


# the most entity types a model tags: training holds (batch, 2n+1, 2n+1) CRF scores per token (mner.model.crf);
# one epoch over 100 posts of 60 tokens, batch 20, peaked at 0.87 GB with 100 types, 0.50 GB with 4 (README)
MAX_ENTITY_TYPES = 100


def make_model_config(posts: Sequence[Post], options: dict, min_word_count: int) -> ModelConfig:
    """A ModelConfig whose vocabularies and label set (``mner.labels.tag_set``) come from the training posts.

    Raises:
        MnerInputError: a bad [model] config, training posts without a single entity or with more than
            ``MAX_ENTITY_TYPES`` types.
    """
    from mner.inputs.embeddings import PAD, UNK, build_vocab, word_key

    types = entity_types(posts)
    if not types:
        raise MnerInputError("the training data hold no entity: expected B-TYPE/I-TYPE tags besides O")
    if len(types) > MAX_ENTITY_TYPES:
        raise MnerInputError(
            f"the training data hold {len(types):,} entity types; a model tags at most {MAX_ENTITY_TYPES} (the "
            "CRF's memory grows with the square of the number of tags): merge types with --label-map FILE"
        )
    try:
        options = migrate_keys(options)
        context = options.get("context")
        if isinstance(context, dict) and context.get("alignment") and types != list(BENCHMARK_TYPES):
            # a context's kinds map onto the model's own types (the benchmark's, the default, need no key)
            options = {**options, "context": {"types": list(types), **context}}
        config = ModelConfig.from_dict(
            {"tags": LabelSet.of(types).tags, "words": [PAD, UNK], "chars": [PAD, UNK], "join_markers": True}
            | options
        )
    except ValueError as err:
        raise MnerInputError(f"bad [model] config: {err}") from None
    words = [PAD, UNK]  # a transformer encoder has its own word pieces: no tuned word vocabulary
    if config.encoder_spec.tuned_words:
        words = build_vocab((p.tokens for p in posts), min_count=min_word_count, key=word_key)
    chars = build_vocab((c for t in p.tokens for c in t) for p in posts)
    return dataclasses.replace(config, words=words, chars=chars)


def set_seed(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def hardware_name(device: torch.device) -> str:
    """What the training ran on, as a model card says it: the GPU's name, or the CPU with torch's thread count."""
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    return f"CPU, {torch.get_num_threads()} torch thread(s) of {os.cpu_count()} cores"


def make_schedule(optimiser: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """A multiplier of every group's learning rate per step: 1 ("constant"), or linear warmup then decay."""
    warmup = int(cfg.warmup * total_steps)

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


class Trainer:
    """One training run; see the module docstring.

    Raises (on construction):
        MnerInputError: a post has no gold tags, the data are empty, a post is over the model's length limit,
        or the device is not there.
    """

    def __init__(
        self,
        train_posts: Sequence[Post],
        dev_posts: Sequence[Post],
        run: RunConfig | None = None,
        images: Mapping[str, ImageFeatures] | None = None,
        on_epoch: Callable[[dict], None] | None = None,
        on_step: Callable[[float], None] | None = None,
    ):
        run = run or RunConfig()
        self.cfg = cfg = run.train
        for name, posts in (("train", train_posts), ("dev", dev_posts)):
            if not posts:
                raise MnerInputError(f"the {name} data hold no posts")
            if any(p.tags is None for p in posts):
                raise MnerInputError(f"every {name} post needs gold tags")
        if run.model.get(
            "join_markers", True
        ):  # the model reads "@" + "name" as "@name" (mner.inputs.markers)
            train_posts = [_joined(p) for p in train_posts]
        self.train_posts, self.dev_posts, self.images = train_posts, dev_posts, images
        self.on_epoch, self.on_step = on_epoch, on_step
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        set_seed(cfg.seed)
        config = make_model_config(train_posts, run.model, cfg.min_word_count)
        if config.features is not None:  # the frozen encoder's weights, recorded: a model refuses others
            from mner.inputs.frozen import encoder_record

            config = dataclasses.replace(config, features_record=encoder_record(config.features))
        _check_lengths(train_posts, config.max_post_tokens)
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise MnerInputError(f"device {cfg.device!r}: this torch build sees no CUDA device")
        self.model = TorchModel.new(config)
        if config.features is not None:
            self._prepare_features(cfg.threads or 1)
        self.network = self.model.network.to(self.device)
        # fine-tuning a transformer on a CPU: ~3.7x faster with denormals flushed; a process-wide setting, so
        # ``fit`` sets it back when the training ends
        # the same with a frozen encoder's features read: epochs of 24 s grew to 140-420 s without it (issue #31)
        self.flushes_denormals = self.device.type == "cpu" and (
            bool(self.network.encoder.pretrained_parameters()) or config.features is not None
        )
        if self.flushes_denormals:
            torch.set_flush_denormal(True)
        self.optimiser = self.network.configure_optimiser(
            cfg.lr, cfg.encoder_lr, cfg.weight_decay, cfg.layer_decay
        )
        steps_per_epoch = -(-len(train_posts) // cfg.batch_size)
        self.scheduler = make_schedule(self.optimiser, cfg, cfg.epochs * steps_per_epoch)
        self.order_rng = random.Random(cfg.seed)
        self.context_rng = random.Random(cfg.seed + 1)  # its own stream: no draws when context_dropout is 0
        self.rates = cfg.corruption_rates()
        self.corruption_rng = random.Random(cfg.seed + 2)  # likewise: no draws without corruption
        self.parsed: list | None = None
        if self.rates.active and config.context.alignment:
            self.parsed = [READERS["context"].entities(config.context, p) for p in self.train_posts]
        self.history: list[dict] = []
        self.best = {"f1": -1.0, "epoch": 0, "state": None}

    def _prepare_features(self, threads: int) -> None:
        """The frozen encoder's features of every training and dev post, computed once through the graph the model
        reads (``features_graph``, as tagging does) into the feature cache (``mner.inputs.frozen``): every epoch, seed
        and rerun after reads them there. With ``feature_context``, each post with its context (its second segment),
        and a training post with context alone too where ``context_dropout`` drops it."""
        from mner.inputs.frozen import second_segment
        from mner.inputs.markers import join

        config, inputs = self.model.config, self.model.batches.inputs
        inputs.use_features(threads, cached=True)
        dev = [join(p.tokens)[0] if config.join_markers else p.tokens for p in self.dev_posts]
        tokens, seconds = [p.tokens for p in self.train_posts] + dev, None
        if config.feature_context:
            seconds = [second_segment(p.context) for p in [*self.train_posts, *self.dev_posts]]
            if self.cfg.context_dropout:
                dropped = [p.tokens for p in self.train_posts if p.context]
                tokens, seconds = tokens + dropped, seconds + [None] * len(dropped)
        started = time.monotonic()
        inputs.frozen(tokens, seconds, progress=True)
        if inputs.frozen.computed:
            log.info(
                "features (%s): %d posts computed in %.0f s, kept in %s",
                self.model.config.features,
                inputs.frozen.computed,
                time.monotonic() - started,
                inputs.frozen.store.path,
            )

    def step(self, posts: Sequence[Post]) -> float:
        """One optimisation step on a batch (loss, backward, clipped gradients, Adam, schedule); its loss."""
        self.network.train()
        if self.cfg.context_dropout:
            posts = [self._without_context(p) for p in posts]
        entities = self._corrupted(posts) if self.parsed is not None else None
        batch = as_tensors(
            self.model.batches.build(posts, with_tags=True, images=self.images, entities=entities),
            self.device,
        )
        loss = self.network.loss(batch)
        self.optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.cfg.grad_clip)
        self.optimiser.step()
        self.scheduler.step()
        value = loss.item()
        if self.on_step is not None:
            self.on_step(value)
        return value

    def _corrupted(self, posts: Sequence[Post]) -> list:
        """Each post's parsed entity list, corrupted (``mner.training.corruption``); another training post's list
        is the source of swapped and spurious names."""
        from mner.labels import BENCHMARK_LABELS
        from mner.training.corruption import corrupt

        config, rng = self.model.config, self.corruption_rng
        out = []
        for post in posts:
            entities = READERS["context"].entities(config.context, post)
            other = self.parsed[rng.randrange(len(self.parsed))]
            labels = config.context.labels or BENCHMARK_LABELS
            out.append(corrupt(entities, self.rates, rng, other, kind_type=labels.kind_type))
        return out

    def _without_context(self, post: Post) -> Post:
        """The post with its context dropped, at the rate ``context_dropout``."""
        if post.context is None or self.context_rng.random() >= self.cfg.context_dropout:
            return post
        return dataclasses.replace(post, context=None)

    def epoch(self, number: int) -> dict:
        """One pass over the shuffled training posts, then dev F1; the epoch's row of the history."""
        from tqdm import tqdm

        start = time.perf_counter()
        order = list(range(len(self.train_posts)))
        self.order_rng.shuffle(order)
        batches = [order[i : i + self.cfg.batch_size] for i in range(0, len(order), self.cfg.batch_size)]
        total = 0.0
        bar = tqdm(
            batches,
            desc=f"epoch {number}",
            disable=not (self.cfg.progress and sys.stderr.isatty()),  # a log gets the epoch lines only
            leave=False,
            unit="batch",
            mininterval=1.0,
        )
        for idx in bar:
            loss = self.step([self.train_posts[i] for i in idx])
            total += loss * len(idx)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        seconds = time.perf_counter() - start
        dev = entity_scores(
            [list(p.tags) for p in self.dev_posts],
            self.model.predict_tags(self.dev_posts, images=self.images),
        )
        row = {
            "epoch": number,
            "loss": total / len(self.train_posts),
            "dev_f1": 100 * dev.f1,
            "seconds": seconds,
        }
        self.history.append(row)
        if dev.f1 > self.best["f1"]:
            self.best = {"f1": dev.f1, "epoch": number, "state": copy.deepcopy(self.network.state_dict())}
        if self.on_epoch:
            self.on_epoch(row)
        return row

    def fit(self) -> list[dict]:
        """Epochs until ``epochs`` or ``patience`` epochs without a better dev F1; keeps the best weights and
        records the run in ``model.record["training"]``. Returns the history (a row an epoch)."""
        try:
            for number in range(len(self.history) + 1, self.cfg.epochs + 1):
                self.epoch(number)
                if number - self.best["epoch"] >= self.cfg.patience:
                    break
        finally:
            if self.flushes_denormals:
                torch.set_flush_denormal(False)  # the process's floating point as it was (the default)
        self.network.load_state_dict(self.best["state"])
        self.network.eval()
        history = self.history
        training = {
            "best_epoch": self.best["epoch"],
            "dev_f1": round(100 * self.best["f1"], 2),
            "epochs_run": len(history),
            "train": dataclasses.asdict(self.cfg),
            "seconds_per_epoch": round(sum(h["seconds"] for h in history) / len(history), 2),
            "hardware": hardware_name(self.device),
        }
        if self.device.type == "cuda":
            training["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20)
        self.model.record["training"] = training
        return history


def train(
    train_posts: Sequence[Post],
    dev_posts: Sequence[Post],
    run: RunConfig | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    images: Mapping[str, ImageFeatures] | None = None,
) -> tuple[TorchModel, list[dict]]:
    """Train a model; return ``(model, history)`` with the weights of the best dev-F1 epoch."""
    trainer = Trainer(train_posts, dev_posts, run, images=images, on_epoch=on_epoch)
    return trainer.model, trainer.fit()


def _joined(post: Post) -> Post:
    """The post as the model reads it: a lone "@"/"#" joined to the token after it, with the joined gold tags."""
    from mner.inputs.markers import join, join_tags

    tokens, found = join(post.tokens)
    if len(tokens) == len(post.tokens):
        return post
    tags = join_tags(post.tags, found) if post.tags is not None else None
    return dataclasses.replace(post, tokens=tokens, tags=tags)


def _check_lengths(posts: Sequence[Post], limit: int) -> None:
    long = [p for p in posts if len(p.tokens) > limit]
    if long:
        raise MnerInputError(
            f"{len(long)} training post(s) exceed max_post_tokens={limit} "
            f"(e.g. {long[0].id!r} with {len(long[0].tokens)} tokens): raise "
            f"max_post_tokens in the [model] config or split the posts"
        )
