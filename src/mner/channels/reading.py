"""A post's context read once: ``read_context(tokens, context)`` → a ``ContextReading`` (the entities it lists).

Two readers, one result:

- **by form** (the fast path): ``mner.channels.entities.read_entities`` knows the shapes LLMs are asked for — the
  numbered list of the published LLM knowledge, JSON, one entity a line, a Markdown table;
- **by alignment**: whatever the markup, the post's own words are found in the context (a run of the post's tokens,
  spaces, ``@``/``#`` and CamelCase aside: ``@KobeBryant`` is found as "Kobe Bryant"), and each one's kind is taken
  from the words beside it — after it ("Bears – sports team", "Bears: sports team", "- name: Bears type: sports
  team", "Bears is a sports team") or, where the list writes kinds first, before it ("[sports team] Bears",
  ``<entity type="sports team">Bears</entity>``). A context whose words are mostly neither the post's names nor
  short kinds beside them is prose, not a list: nothing is read from it.

The fast path's list is used where it read several items, or where the alignment (``mner.channels.context.align``)
places its names on as many of the post's tokens as the names found by alignment; else the alignment's names, as the
context writes them. Every reader is linear in the context's length
(at most ``MAX_CHARS`` characters) and the post's (runs of at most ``MAX_SPAN`` tokens), and nothing raises.

Each (tokens, context) pair is read once per process (``read_context`` keeps the last ``CACHE_SIZE`` readings):
routing, batching, the kind vectors and training all take the same reading. ``PARSES`` counts the readings made.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import regex

from mner.channels.entities import MAX_CHARS, prose_names, prose_text, read_entities
from mner.data import split_handle
from mner.labels import BENCHMARK_LABELS, GENERIC_KIND_WORDS, LabelSet

MAX_SPAN = 8  # tokens of one name found by alignment
MAX_KIND_WORDS = 8  # of a kind read beside a name (a longer run of words is prose)
MIN_COVERED = 0.6  # of a context's content words that names and kinds must be for it to read as a list
MAX_FUNCTION_SHARE = 0.15  # of a context's words: more function words than this is prose
CACHE_SIZE = 1 << 15
PARSES = 0  # readings made (not taken from the cache): tests count them

HOW = ("list", "aligned", "prose", "none")

_WORD = regex.compile(r"[^\W_]+")
_REASONING = regex.compile(r"(?i:reasoning|explanation|rationale)[ \t]{0,3}:|Reasoning(?=[A-Z])")
# what separates the items and fields of a list, whatever its markup
# (a full stop after an initial or a title is no delimiter: "J. Cole", "Dr. Dre")
_DELIMS = regex.compile(
    r"[;,|<>{}\[\]()\"“”‘’*`=→⇒:\t\n\r]|(?:^|\s)[-–—•·+]+(?=\s|$)"
    r"|(?<!(?<![^\W_])(?:[A-Z]|Dr|Mr|Mrs|Ms|St|Jr|Sr|Mt|Ft|vs|No|Nos|Inc|Co|Corp|Ltd|Ave|Gen|Sen|Rep|Gov|Prof|Lt|Col|Capt|Sgt))\.(?=\s|$)|(?:^|\s)\d{1,3}[.)](?=\s|$)|(?<=\s)/|/(?=\w+>)"
    r"|\s(?:is|are|was|were)(?:\s(?:an?|the))?(?=\s)"
)
_DELIMS_BUT_COMMA = regex.compile(_DELIMS.pattern.replace(";,|", ";|", 1))
_WORD_OR_COMMA = regex.compile(r"[^\W_]+|,")
# words that are markup, headers or keys of a list, never a name or a kind on their own
_KEYS = frozenset(
    [
        "name",
        "names",
        "entity",
        "entities",
        "named",
        "type",
        "types",
        "kind",
        "kinds",
        "category",
        "categories",
        "label",
        "labels",
        "class",
        "tag",
        "tags",
        "value",
        "text",
        "mention",
        "mentions",
        "json",
        "here",
        "are",
        "is",
        "the",
        "following",
        "found",
        "in",
        "this",
        "post",
        "tweet",
        "list",
        "of",
        "identified",
        "recognized",
        "recognised",
        "extracted",
        "mentioned",
        "item",
        "items",
        "result",
        "results",
        "output",
        "answer",
        "ner",
        "entity_type",
        "entity_name",
    ]
)
# words around a kind that are not the kind ("is a sports team", "a city")
_LIST_WORDS = frozenset(
    ["a", "an", "the", "is", "are", "was", "of", "and", "or", "here"]
)  # in lists too: "X is a Y", headers
# words of an LLM's reasoning about a post, not of a list ("The sentence mentions ..., which is likely ...")
_PROSE_WORDS = frozenset(
    [
        "sentence",
        "mentions",
        "mentioned",
        "mention",
        "image",
        "suggests",
        "suggest",
        "likely",
        "refers",
        "which",
        "also",
        "as",
        "does",
        "about",
        "been",
        "has",
        "have",
        "be",
    ]
)
_IN_KINDS = frozenset(
    ("of", "and", "or")
)  # function words a kind may hold: "body of water", "event or hashtag"
_FILLER = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "a",
        "an",
        "the",
        "it",
        "refers",
        "to",
        "as",
        "which",
        "be",
        "s",
        "its",
        "also",
    ]
)
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "at",
        "but",
        "by",
        "for",
        "from",
        "he",
        "her",
        "his",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "oh",
        "on",
        "or",
        "our",
        "rt",
        "she",
        "so",
        "that",
        "the",
        "their",
        "them",
        "there",
        "these",
        "they",
        "this",
        "to",
        "us",
        "via",
        "was",
        "we",
        "what",
        "when",
        "where",
        "who",
        "why",
        "with",
        "you",
        "your",
        "yes",
        "new",
        "good",
        "great",
        "today",
        "just",
        "here",
        "now",
    ]
)


@dataclass(frozen=True)
class ContextReading:
    """What a post's context lists: (name, kind or None) pairs in the context's order, and how they were read —
    "list" (a known form), "aligned" (the post's words found in the context), "prose" (names the post shares with
    free prose, when asked for) or "none" (no context, or nothing readable)."""

    entities: tuple[tuple[str, str | None], ...] = ()
    how: str = "none"

    def to_dict(self) -> dict:
        return {"how": self.how, "entities": [{"name": n, "kind": k} for n, k in self.entities]}


NOTHING = ContextReading()


def read_context(tokens: Sequence[str], context: str | None, prose_fallback: bool = False) -> ContextReading:
    """The entities a post's context lists (see the module docstring), read once per (tokens, context)."""
    if not isinstance(context, str) or not context.strip():
        return NOTHING
    from mner.inputs.markers import join

    # read on the tokens as a model reads them (a lone "@"/"#" joined to its name), whichever the caller holds: one
    # reading per post for the pipeline's warning, routing and batching alike
    return _read(join(tokens)[0], context, prose_fallback)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _read(tokens: tuple[str, ...], context: str, prose_fallback: bool) -> ContextReading:
    global PARSES
    PARSES += 1
    try:
        listed = _listed(context)
        aligned = aligned_entities(tokens, context)
        found = _merged(tokens, listed, aligned)
        if found is not None:
            return found
        if prose_fallback:
            names = prose_names(tokens, prose_text(context))
            if names:
                return ContextReading(tuple(names), "prose")
        return NOTHING
    except Exception:  # noqa: BLE001 - a context text is data: never let one stop a run
        return NOTHING


@functools.lru_cache(maxsize=256)
def _listed(context: str) -> list[tuple[str, str | None]]:
    """The fast path's list of a context, read once for all the posts (or windows of a long post) it is given to."""
    return read_entities(context)


def _merged(tokens, listed, aligned) -> ContextReading | None:
    """The fast path's list where it read several clean items (a known form), or places as many of the post's tokens
    as the alignment's names; else the alignment's names."""
    found = tuple(dict.fromkeys((name, kind) for _, name, kind in aligned))
    if not found:
        return ContextReading(tuple(listed), "list") if listed else None
    if not listed:
        return ContextReading(found, "aligned")
    clean = all(_clean(name) and _clean(kind or "") for name, kind in listed)
    if clean and len(listed) > 1:
        return ContextReading(tuple(listed), "list")
    by_list, by_alignment = _placed(tokens, listed), _placed(tokens, found)
    if by_list > by_alignment or (clean and by_list == by_alignment):
        return ContextReading(tuple(listed), "list")
    return ContextReading(found, "aligned")


_MARKUP_IN_NAME = regex.compile(r"\s[-–—]\s|\*\*|\s[-–—]$|^[-–—•]\s|:\s|\|")


def _clean(name: str) -> bool:
    """A name or kind as a known form reads it, not a run of another form's markup ("- J. Cole – person/rapper",
    "celestial object: the sun")."""
    return _MARKUP_IN_NAME.search(name) is None


def _placed(tokens: Sequence[str], entities) -> int:
    """How many of the post's tokens the alignment places a list's names on."""
    return sum(tag != "O" for tag in align(tokens, [(n, k or "") for n, k in entities]))


# ------------------------------------------------------------------------------------ the alignment


@functools.lru_cache(maxsize=1 << 16)
def _words(token: str) -> tuple[str, ...]:
    """A token's normalised words: ``#NewYork`` → ``new york``, ``@KobeBryant`` → ``kobe bryant``."""
    if len(token) > 1 and token[0] in "#@＃＠":
        token = split_handle(token)
    return tuple(w.lower() for w in _WORD.findall(token))


def align(
    tokens: Sequence[str],
    entities: Sequence[tuple[str, str]],
    generic_tag: bool = False,
    labels: LabelSet | None = None,
) -> list[str]:
    """A tag from ``ALIGN_TAGS`` per token: where a named entity's words occur in the post (whole tokens),
    ``B-``/``I-`` with its mapped type; longer names first, no overlaps. ``generic_tag``: a kind that names no
    type at all (``is_generic``) gives ``B-ANY``/``I-ANY`` (``ANY_TAGS``) in place of UNK. ``labels``: the types
    kinds map onto (the benchmark's by default; ``align_tags``)."""
    return [tag for tag, _ in align_kinds(tokens, entities, generic_tag, labels)]


def align_kinds(
    tokens: Sequence[str],
    entities: Sequence[tuple[str, str | None]],
    generic_tag: bool = False,
    labels: LabelSet | None = None,
) -> list[tuple[str, str | None]]:
    """``align``'s tag of each token with the listed kind of the entity it is in (None outside one). Linear in the
    post's words and the names' occurrences: each name is looked for only where its first word stands."""
    return _aligned(tokens, entities, generic_tag, labels)[0]


def placed_names(
    tokens: Sequence[str], entities: Sequence[tuple[str, str | None]], labels: LabelSet | None = None
) -> list[bool]:
    """Whether the alignment places each listed name on the post's tokens (one pass for the whole list)."""
    placed = _aligned(tokens, entities, False, labels)[1]
    return [_words(name) in placed for name, _ in entities]


def _aligned(
    tokens: Sequence[str],
    entities: Sequence[tuple[str, str | None]],
    generic_tag: bool,
    labels: LabelSet | None,
) -> tuple[list[tuple[str, str | None]], set[tuple[str, ...]]]:
    words, owner, starts = [], [], set()
    for t, token in enumerate(tokens):
        starts.add(len(words))
        for w in _words(token):
            words.append(w)
            owner.append(t)
    ends = {i for i in range(1, len(words) + 1) if i == len(words) or owner[i] != owner[i - 1]}
    where: dict[str, list[int]] = {}
    for i, w in enumerate(words):
        if i in starts:
            where.setdefault(w, []).append(i)
    tags: list[tuple[str, str | None]] = [("O", None)] * len(tokens)
    # the LLM's order among names of one length: deterministic (a set's order would change with the process)
    named = sorted(
        dict.fromkeys(
            (
                tuple(_words(name)),
                (labels or BENCHMARK_LABELS).kind_type(kind)
                or ("ANY" if generic_tag and is_generic(kind) else "UNK"),
                kind or None,
            )
            for name, kind in entities
        ),
        key=lambda item: -len(item[0]),
    )
    placed: set[tuple[str, ...]] = set()
    for name, etype, kind in named:
        n = len(name)
        if not n:
            continue
        for i in where.get(name[0], ()):
            if i + n in ends and tuple(words[i : i + n]) == name:
                first, last = owner[i], owner[i + n - 1]
                if all(tag == "O" for tag, _ in tags[first : last + 1]):
                    tags[first] = (f"B-{etype}", kind)
                    for k in range(first + 1, last + 1):
                        tags[k] = (f"I-{etype}", kind)
                    placed.add(name)
    return tags, placed


def is_generic(kind: str | None) -> bool:
    """Whether a kind names no type at all: none given, or only words like "entity", "thing", "name"."""
    if not kind:
        return True
    words = [w.lower() for w in _WORD.findall(kind)]
    return all(w in GENERIC_KIND_WORDS for w in words)


def kind_word(word: str) -> bool:
    """Whether a word names an entity type or says "entity" ("Person", "city", "entity")."""
    low = word.lower()
    return BENCHMARK_LABELS.names_type(low) or low in GENERIC_KIND_WORDS


# ------------------------------------------------------------------------------------- by alignment


@dataclass(frozen=True)
class _Occurrence:
    start: int  # character offsets of the name in the context
    end: int
    words: int


def _token_key(token: str) -> str:
    return "," if token == "," else "".join(_WORD.findall(token)).lower()


def _segments(text: str, delims=_DELIMS) -> list[tuple[int, int]]:
    """(start, end) of the runs of the text between delimiters."""
    out, at = [], 0
    for m in delims.finditer(text):
        if m.start() > at:
            out.append((at, m.start()))
        at = max(at, m.end())
    if at < len(text):
        out.append((at, len(text)))
    return out


@functools.lru_cache(maxsize=64)
def _context_index(text: str) -> tuple[dict[str, list[_Occurrence]], bool, frozenset[tuple[int, int]]]:
    """A context's runs, whether it is cased and its items, made once for all the posts (or windows) it is given to."""
    return _index(text), any(c.isupper() for c in text), frozenset(_items(text))


def _index(text: str) -> dict[str, list[_Occurrence]]:
    """Every run of at most MAX_SPAN words inside one segment, by its words joined lower-case: where it occurs. A
    run may cross a comma, kept in its key ("fayetteville,nc"): it matches a post that has the comma too."""
    index: dict[str, list[_Occurrence]] = {}
    # a comma joins a name's parts ("Fayetteville, NC") where the items are set apart by something else
    delims = _DELIMS_BUT_COMMA if 2 * text.count(",") < len(_segments(text)) else _DELIMS
    for seg_start, seg_end in _segments(text, delims):
        words = list(_WORD_OR_COMMA.finditer(text, seg_start, seg_end))
        for s in range(len(words)):
            if words[s].group() == ",":
                continue
            key = ""
            for n in range(s, min(len(words), s + MAX_SPAN)):
                key += words[n].group().lower()
                if words[n].group() == ",":
                    continue
                found = index.setdefault(key, [])
                if len(found) < 4:
                    found.append(_Occurrence(words[s].start(), words[n].end(), n - s + 1))
    return index


def _list_region(context: str) -> str:
    """The part of a context that may hold its list: before a "Reasoning:" (or similar) part."""
    text = context[:MAX_CHARS]
    end = _REASONING.search(text)
    return text[: end.start()] if end is not None else text  # all "Reasoning:": prose, no list


def _name_like(
    text: str, occ: _Occurrence, tokens: Sequence[str], i: int, cased: bool, items: frozenset[tuple[int, int]]
) -> bool:
    """Whether a found run reads as a name: capitalised (or a handle, hashtag or number) in the context, or in the
    post where the context is all lower-case; or a whole item of the list on its own ("smartphone, coyote") that
    is no kind word ("city")."""
    before = text[occ.start - 1] if occ.start > 0 else " "
    if before == "/" or text[occ.end : occ.end + 1] == "/":
        return False  # a part of "person/CEO", "Rock/Pop"
    if before in "@#＠＃" or (tokens[i][:1] in "@#＠＃" and len(tokens[i]) > 1):
        return True
    if before in '*"“`' and text[occ.end : occ.end + 1] in ("*", '"', "”", "`"):
        return True  # marked as a name: **smartphone**, "coyote"
    first = text[occ.start] if cased else tokens[i][:1]
    if first.isupper() or first.isdigit() or (cased and any(c.isupper() for c in text[occ.start : occ.end])):
        return True  # "Bears", "2 Chainz", "iTunes Store"
    return (occ.start, occ.end) in items and not any(
        kind_word(w) for w in _WORD.findall(text[occ.start : occ.end])
    )


def _items(text: str) -> set[tuple[int, int]]:
    """(start, end) of the words of each run between delimiters: the list's items as written."""
    out = set()
    for start, end in _segments(text):
        words = list(_WORD.finditer(text, start, end))
        if words:
            out.add((words[0].start(), words[-1].end()))
    return out


def _spans(tokens: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end, key) of each run of at most MAX_SPAN tokens that starts and ends with a word; longest first."""
    keys = [_token_key(t) for t in tokens]
    out = []
    for i in range(len(tokens)):
        if keys[i] in ("", ","):
            continue
        key = ""
        for j in range(i, min(len(tokens), i + MAX_SPAN)):
            key += keys[j]
            if keys[j] not in ("", ","):
                out.append((i, j + 1, key))
    out.sort(key=lambda s: (-(s[1] - s[0]), -len(s[2]), s[0]))
    return out


def aligned_entities(tokens: Sequence[str], context: str) -> list[tuple[tuple[int, int], str, str | None]]:
    """((start, end) of the post's tokens, the name as the context writes it, kind or None) of each of the post's
    names the context lists, whatever its markup; [] where the context reads as prose."""
    text = _list_region(context)
    if not tokens or not text.strip():
        return []
    index, cased, items = _context_index(text)
    chosen: list[tuple[tuple[int, int], _Occurrence]] = []
    taken: set[int] = set()
    for i, j, key in _spans(tokens):
        if key in _STOP or key in _KEYS or len(key) < 2 or any(k in taken for k in range(i, j)):
            continue
        occurrences = [
            o
            for o in index.get(key, ())
            if _name_like(text, o, tokens, i, cased, items) and not _inside(o, [c for _, c in chosen])
        ]
        if occurrences:
            chosen.append(((i, j), occurrences[0]))
            taken.update(range(i, j))
    if not chosen:
        return []
    kinds, covered, prose = _kinds(text, sorted({occ for _, occ in chosen}, key=lambda o: o.start))
    if (
        prose
        or covered < MIN_COVERED * max(1, _content_words(text))
        or _function_share(text) > MAX_FUNCTION_SHARE
    ):
        return []  # prose that happens to name some of the post's words
    chosen.sort(key=lambda c: c[0][0])
    return [(span, _as_written(text, occ), kinds.get(occ)) for span, occ in chosen]


def _inside(occ: _Occurrence, chosen: list[_Occurrence]) -> bool:
    """Whether a run lies within a longer name already found ("Top" of "Top 10")."""
    return any(
        c.start <= occ.start and occ.end <= c.end and (c.start, c.end) != (occ.start, occ.end) for c in chosen
    )


def _as_written(text: str, occ: _Occurrence) -> str:
    """The name as the context writes it, with the "@"/"#" before it ("@PCraigRoberts")."""
    start = occ.start - 1 if occ.start > 0 and text[occ.start - 1] in "@#＠＃" else occ.start
    return text[start : occ.end]


def _function_share(text: str) -> float:
    """The share of a text's words that are function words a list does not need ("in", "that", "with", "his"):
    prose has many, a list of names and kinds, even one in sentences ("Bears is a sports team."), next to none."""
    words = [w.lower() for w in _WORD.findall(text)]
    return sum((w in _STOP and w not in _LIST_WORDS) or w in _PROSE_WORDS for w in words) / max(1, len(words))


def _content_words(text: str) -> int:
    return sum(1 for w in _WORD.findall(text) if w.lower() not in _KEYS | _FILLER | _STOP and not w.isdigit())


def _chunks(gap: str, after_name: bool = True, before_name: bool = True) -> list[str]:
    """The kinds a gap between two names may hold: its delimiter-free runs as written, fillers and keys around
    them left out ("is a sports team" → "sports team"); runs of keys alone ("type", "entity") dropped. A run that
    touches a name with no delimiter between ("Hunterdon| County") is part of that name: left out."""
    out = []
    for start, end in _segments(gap):
        if (after_name and start == 0 and gap[:1].strip()) or (
            before_name and end == len(gap) and gap[-1:].strip()
        ):
            continue
        words = list(_WORD.finditer(gap, start, end))
        while words and words[0].group().lower() in _FILLER | _KEYS:
            words.pop(0)
        while words and words[-1].group().lower() in _FILLER:
            words.pop()
        if not words or all(w.group().lower() in _KEYS or w.group().isdigit() for w in words):
            continue
        out.append(" ".join(gap[words[0].start() : words[-1].end()].split()))
    return out


def _short_item(chunk: str) -> bool:
    """A short run of words with no function word but "of"/"and": a name or a kind, not a clause."""
    words = chunk.split()
    return len(words) <= MAX_KIND_WORDS and not any(
        w.lower() in _STOP and w.lower() not in _IN_KINDS for w in words
    )


def _kind_like(chunk: str) -> bool:
    """A short run of words with no function word but "of"/"and" ("sports team", "body of water"), not a clause;
    and not a name ("Barack Obama": capitalised words none of which is a kind word, as "Person" is)."""
    if not _short_item(chunk):
        return False
    words = chunk.split()
    capitalised = all(w[:1].isupper() or w[:1].isdigit() for w in words)
    # a capitalised kind is a type's word or two ("Person", "Sports Team"); else it is a name ("Person 12")
    return not capitalised or (len(words) <= 2 and all(kind_word(w) for w in _WORD.findall(chunk)))


def _kinds(text: str, found: list[_Occurrence]) -> tuple[dict[_Occurrence, str | None], int, bool]:
    """Each found name's kind (the words beside it), how many content words names and kinds make up, and whether
    the words between names read as clauses ("won in", "today"), not kinds or names: prose."""
    gaps = [text[: found[0].start]]
    gaps += [text[a.end : b.start] for a, b in itertools.pairwise(found)]
    gaps.append(text[found[-1].end :])
    last = len(gaps) - 1  # the text before the first name and after the last touch a name on one side only
    chunks = [_chunks(g, after_name=k > 0, before_name=k < last) for k, g in enumerate(gaps)]
    # a list alternates names and kinds: its names at even places (kinds after them) or odd ones (kinds first)
    places = [sum(len(cs) for cs in chunks[: k + 1]) + k for k in range(len(found))]
    after = sum(p % 2 == 0 for p in places) >= sum(p % 2 == 1 for p in places)
    kinds: dict[_Occurrence, str | None] = {}
    for k, occ in enumerate(found):
        near = chunks[k + 1][:1] if after else chunks[k][-1:]
        kinds[occ] = near[0] if near and _kind_like(near[0]) else None
    # a list's items are short runs of words (names, kinds, the post's or others); prose's are clauses
    every = [c for cs in chunks for c in cs]
    items = [c for c in every if _short_item(c)]
    covered = sum(o.words for o in found) + sum(_content_words(c) for c in items)
    clauses = [c for c in every if not _short_item(c)]
    return kinds, covered, len(clauses) > 1 and 3 * len(clauses) > len(every)
