"""Splitting raw post text into tokens as the Twitter-2015 files are split, with each token's character offsets
into the text as given.

``tokenize_with_offsets(text)`` gives the tokens and, for each, ``(start, end)`` into ``text`` itself (not into a
normalised copy). What it does, in order:

1. Invisible characters never make or end a token. A control character (NUL, ``\\x01``, …, C1) separates
   tokens like a space. Format and other default-ignorable characters (zero-width space, bidi marks, the
   byte-order mark, soft hyphen, Hangul fillers, …) are dropped: ``#\\u200edarmageddon`` is ``#darmageddon``.
   Those that build words and emoji stay where they attach to the visible character before them: variation
   selectors and emoji tags (``❤️``, a subdivision flag), and ZWJ/ZWNJ between two word characters or two
   emoji (``👨‍👩‍👧``, ZWNJ inside a Persian word); anywhere else they are dropped too.
2. Each grapheme cluster is normalised to NFC (a decomposed "José" gives the composed token), except a cluster
   of over ``MAX_NORMALISED_CLUSTER`` code points (stacked "Zalgo" marks): CPython reorders marks in quadratic
   time, so such a cluster stays as written.
3. ``@user``, ``#hashtag``, URLs, domain-like names (``Crypto.com``, ``amazon.co.uk``), ``&amp`` and emoji (skin tones, flags, ZWJ sequences) stay whole; punctuation
   and apostrophes are split off; no token boundary falls inside a grapheme cluster.

A token's ``text[start:end]`` begins and ends with visible characters (dropped characters at its edges are
outside it); normalised and with its dropped characters left out, it is the token.

Every step is linear in the text's length (``benchmarks/bench_tokenizer.py``): the ``regex`` module's ``\\X``
scans each run of regional indicators back to its start (quadratic on a line of flags), so clusters are found
on a copy whose flag pairs are stand-ins with the same cluster boundaries.
"""

from __future__ import annotations

import bisect
import unicodedata

import regex

MAX_NORMALISED_CLUSTER = 32  # code points; a longer cluster is kept as written (see the module docstring)

_CONTROLS = regex.compile(r"[\p{Cc}--\s]+", regex.V1)  # separate tokens like a space
_INVISIBLE = regex.compile(r"[[\p{Cf}\p{Default_Ignorable_Code_Point}]--\s]+", regex.V1)  # dropped, or ...
# ... kept where they attach to the visible character before them
_ATTACHING = regex.compile(
    r"[\u200c\u200d\U000e0020-\U000e007f[\p{Default_Ignorable_Code_Point}&&\p{Mn}]]", regex.V1
)
_JOINERS = "\u200c\u200d"
_EMOJI_CHAR = regex.compile(r"[\p{Extended_Pictographic}\p{Emoji_Modifier}]")
_WORD_CHAR = regex.compile(r"\w")
_REGIONAL_INDICATORS = regex.compile("[\U0001f1e6-\U0001f1ff]+")
_CLUSTER_RE = regex.compile(r"\X")
_WORD_RE = regex.compile(r"\S+")

_EMOJI = "[\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff]"
_EMOJI_MOD = "[\ufe0f\U0001f3fb-\U0001f3ff]"
# a domain-like name (``Crypto.com``, ``amazon.co.uk``, ``bit.ly/x``): labels of at most 63 word characters, at most
# five before a top-level domain of this list (common words such as "in", "me", "it" left out: "home.It was" is a
# missing space, not a domain), and its path; every quantifier bounded or possessive, so the scan stays linear
_TLDS = "com|org|net|edu|gov|mil|int|io|co|uk|ca|de|fr|nl|au|jp|ru|br|tv|ly|fm|gg|ai|info|biz"
_LABEL = r"\w{1,63}+(?:-\w{1,63}+){0,4}+"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL}){{0,4}}?\.(?i:{_TLDS})(?!\w|[.-]\w)(?:/\S*+)?"
_TOKEN_RE = regex.compile(  # regex's \w is Unicode's: letters with their marks, joiners
    r"""
    (?:https?://|www\.)\S+                               # URL, kept whole
    | [A-Za-z]+://\S+
    | """
    + _DOMAIN
    + r"""                                             # a domain-like name, kept whole
    | &[A-Za-z]+;?                                       # HTML entity as tweeted (&amp)
    | [@＠]\w+                                           # @user
    | [#＃]\w+                                           # #hashtag
    | \w+(?:[-\u200c\u200d]\w+)*                           # words, numbers, hyphenated words (ZWJ/ZWNJ inside)
    | """
    + f"{_EMOJI}{_EMOJI_MOD}*(?:\u200d{_EMOJI}{_EMOJI_MOD}*)*"
    + r"""  # one emoji, ZWJ sequences kept
    | \.{2,} | -{2,} | …                                 # ellipses and dashes
    | \S                                                 # any other single character
    """,
    regex.VERBOSE,
)
_CAMEL = regex.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def tokenize(text: str) -> list[str]:
    """Split raw tweet text as the Twitter-2015 files are split (``@user``, ``#tag``, URLs, emoji whole), NFC
    normalised, invisible characters dropped (see the module docstring)."""
    return tokenize_with_offsets(text)[0]


def tokenize_with_offsets(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The tokens of ``text`` and each token's ``(start, end)`` into ``text`` as given (end exclusive; see the
    module docstring for how ``text[start:end]`` and the token relate)."""
    visible, dropped = _visible(text)
    normal, normalised = _normalise(visible)
    spans = [(s, e) for s, e in _token_spans(normal) if e > s]
    offsets = [(dropped.start(normalised.start(s)), dropped.end(normalised.end(e))) for s, e in spans]
    return [normal[s:e] for s, e in spans], offsets


def split_handle(token: str) -> str:
    """``#NewYork`` → ``"New York"``, ``@KobeBryant`` → ``"Kobe Bryant"``, ``#nyc`` → ``"nyc"``."""
    body = token.lstrip("#@＃＠")
    words = [w for part in body.split("_") for w in (_CAMEL.findall(part) or [part])]
    return " ".join(w for w in words if w)


# ------------------------------------------------------------------------------------------- steps


class _Edits:
    """Where positions of an edited text are in the text it was made from. An edit either drops characters at a
    position p of the edited text (key 2p + 1) or changes the length of a cluster that ends at p (key 2p);
    ``shifts[i]`` is added to positions from ``keys[i]`` on."""

    def __init__(self):
        self.keys, self.shifts = [-1], [0]

    def add(self, key: int, shift: int) -> None:
        self.keys.append(key)
        self.shifts.append(shift)

    def start(self, p: int) -> int:
        """Where a token starting at ``p`` starts in the original: after any characters dropped at ``p``."""
        return p + self.shifts[bisect.bisect_right(self.keys, 2 * p + 1) - 1]

    def end(self, p: int) -> int:
        """Where a token ending at ``p`` ends in the original: before any characters dropped at ``p``."""
        return p + self.shifts[bisect.bisect_right(self.keys, 2 * p) - 1]


def _visible(text: str) -> tuple[str, _Edits]:
    """``text`` with controls as spaces and the invisible characters that are not kept dropped (step 1 of the
    module docstring), and where its positions are in ``text``."""
    edits = _Edits()
    if text.isascii() and text.isprintable():
        return text, edits
    text = _CONTROLS.sub(lambda m: " " * len(m.group()), text)  # same length: positions unchanged
    pieces, at, length = [], 0, 0
    for run in _INVISIBLE.finditer(text):
        kept = _kept(text, run.start(), run.end())
        pieces.append(text[at : run.start()] + kept)
        length += run.start() - at + len(kept)
        if len(kept) < run.end() - run.start():
            edits.add(2 * length + 1, run.end() - length)
        at = run.end()
    pieces.append(text[at:])
    return "".join(pieces), edits


def _kept(text: str, start: int, end: int) -> str:
    """What is kept of the run of invisible characters ``text[start:end]``: the characters that attach to the
    visible one before it, up to the first that does not; joiners only between two word characters or emoji."""
    before = text[start - 1] if start > 0 else " "
    if before.isspace():
        return ""
    run = text[start:end]
    count = 0
    while count < len(run) and _ATTACHING.match(run[count]):
        count += 1
    kept = run[:count]
    after = text[end] if end < len(text) and count == len(run) else " "
    words = bool(_WORD_CHAR.match(before) and _WORD_CHAR.match(after))
    emoji = bool(_EMOJI_CHAR.match(before) and _EMOJI_CHAR.match(after))
    for i, char in enumerate(kept):  # ZWNJ joins words; ZWJ joins words and emoji
        if char in _JOINERS and not (words or (emoji and char == "\u200d")):
            return kept[:i]
    return kept


def _normalise(text: str) -> tuple[str, _Edits]:
    """``text`` in NFC, cluster by cluster (step 2), and where its positions are in ``text``. Whitespace is kept
    as it is (it composes with nothing)."""
    edits = _Edits()
    if text.isascii() or unicodedata.is_normalized("NFC", text):
        return text, edits
    pieces: list[str] = []
    at = length = 0  # in text; in the normalised text
    for word in _WORD_RE.finditer(text):
        pieces.append(text[at : word.start()])
        length += word.start() - at
        for start, end in _clusters(word.group()):
            # a joiner ending a cluster may end up outside its token: a boundary before it maps back too
            cluster = word.group()[start:end].rstrip(_JOINERS)
            normal = cluster
            if not cluster.isascii() and len(cluster) <= MAX_NORMALISED_CLUSTER:
                normal = unicodedata.normalize("NFC", cluster)
            pieces.append(normal + word.group()[start + len(cluster) : end])
            length += len(normal)
            if len(normal) != len(cluster):
                edits.add(2 * length, word.start() + start + len(cluster) - length)
            length += end - start - len(cluster)
        at = word.end()
    pieces.append(text[at:])
    return "".join(pieces), edits


def _clusters(text: str) -> list[tuple[int, int]]:
    """(start, end) of each grapheme cluster of ``text``, in linear time (see the module docstring)."""
    if _REGIONAL_INDICATORS.search(text):
        # a flag's two indicators cluster like "a" + a combining mark, a lone one like "a": same boundaries
        text = _REGIONAL_INDICATORS.sub(
            lambda m: "a\u0301" * (len(m.group()) // 2) + "a" * (len(m.group()) % 2), text
        )
    return [m.span() for m in _CLUSTER_RE.finditer(text)]


def _token_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each token of normalised text; pieces of one grapheme cluster are joined into one token."""
    spans = [m.span() for m in _TOKEN_RE.finditer(text)]
    if text.isascii():  # ASCII text has no multi-character clusters but CRLF, never inside a token
        return spans
    boundary = bytearray(len(text) + 1)  # boundary[i]: a cluster starts at i (or i is the end)
    for start, _ in _clusters(text):
        boundary[start] = 1
    boundary[len(text)] = 1
    joined: list[tuple[int, int]] = []
    for start, end in spans:
        if joined and joined[-1][1] == start and not boundary[start]:
            joined[-1] = (joined[-1][0], end)  # the previous token ends inside this cluster
        else:
            joined.append((start, end))
    # a ZWJ/ZWNJ that joins nothing inside its token (two of them, a flag before an emoji) is left out of it
    return [(start, start + len(text[start:end].rstrip(_JOINERS))) for start, end in joined]
