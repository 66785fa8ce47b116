"""The ``@``/``#`` convention: a lone ``@`` or ``#`` token followed by a token is read as one joined token.

Twitter-2015 writes a user name or a hashtag as one token (``@jehnnybgoode``, ``#NBAAwards``); Twitter-2017
writes two (``@`` then ``jehnnybgoode``). A model reads posts in the one-token form: ``join`` makes the tokens
the model reads, with the file's own token positions of each; ``split`` puts the tags the model gave the joined
tokens back on the file's tokens, so that gold tags, evaluation and output spans stay on the file's tokens:

- the name token gets the joined token's tag;
- the lone ``@``/``#`` gets ``O``, or ``I-X`` where the joined token continues an entity (``I-X``), so that a
  span running through it (``Oakland # Raiders``) stays whole.

``join_tags`` is the other way, for training: the joined token's gold tag is the marker's where the marker is
inside an entity (``B-``/``I-``), else the name token's.

No mner imports: a pure function over token sequences.
"""

from __future__ import annotations

from collections.abc import Sequence

MARKERS = frozenset({"@", "#", "＠", "＃"})
_MARKER_CHARS = "@#＠＃"


def groups(tokens: Sequence[str]) -> list[tuple[int, ...]]:
    """The file's token positions behind each joined token: ``(i,)``, or ``(i, i + 1)`` for a marker and the
    token after it (a marker followed by nothing, or by a token that begins with a marker, stays alone)."""
    out: list[tuple[int, ...]] = []
    i, n = 0, len(tokens)
    while i < n:
        if (
            tokens[i] in MARKERS
            and i + 1 < n
            and tokens[i + 1][:1] not in _MARKER_CHARS
            and tokens[i + 1][:1].strip()
        ):
            out.append((i, i + 1))
            i += 2
        else:
            out.append((i,))
            i += 1
    return out


def join(tokens: Sequence[str]) -> tuple[tuple[str, ...], list[tuple[int, ...]]]:
    """(the tokens a model reads, the file's positions behind each); unchanged where no lone marker is."""
    found = groups(tokens)
    return tuple("".join(tokens[i] for i in g) for g in found), found


def join_tags(tags: Sequence[str], found: Sequence[tuple[int, ...]]) -> tuple[str, ...]:
    """The gold tag of each joined token (see the module docstring)."""
    out = []
    for g in found:
        if len(g) == 1:
            out.append(tags[g[0]])
        else:
            marker, name = tags[g[0]], tags[g[1]]
            out.append(marker if marker != "O" else name)
    return tuple(out)


def split(tags: Sequence[str], found: Sequence[tuple[int, ...]], length: int) -> list[str]:
    """Tags of the file's ``length`` tokens from the tags of the joined tokens (see the module docstring)."""
    out = ["O"] * length
    for tag, g in zip(tags, found, strict=True):
        if len(g) == 1:
            out[g[0]] = tag
        else:
            out[g[0]] = tag if tag.startswith("I-") else "O"
            out[g[1]] = tag
    return out


def split_spans(spans, found: Sequence[tuple[int, ...]], tokens: Sequence[str]) -> list:
    """Spans (``mner.data.Span``) over the joined tokens as spans over the file's ``tokens``, as ``split`` does
    with tags: an entity that begins at a joined ``@``/``#`` token begins at the name after the marker."""
    from dataclasses import replace

    out = []
    for span in spans:
        first = found[span.start]
        start = first[-1] if len(first) == 2 else first[0]
        end = found[span.end - 1][-1] + 1
        out.append(replace(span, start=start, end=end, text=" ".join(tokens[start:end])))
    return out
