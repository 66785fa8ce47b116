"""The entity list in a context text, whatever form its writer chose: ``read_entities`` → ``[(name, kind)]``.

An LLM asked about a post writes its named entities in many ways; the model reads one structured list. Read:

- the numbered list of the published LLM knowledge, ``Named entities:1. Bears (sports team)2. Chicago (city)
  Reasoning: ...``, with or without the header, spaces or newlines, ``1.`` or ``1)``;
- JSON: an array of objects with a name key (``name``/``entity``/``text``...) and a kind key
  (``type``/``kind``/``label``...), or of strings ``"Bears (team)"``; an object holding such an array under
  any key; an object mapping kinds to lists of names; an object mapping names to kinds; inside a
  Markdown code fence or not;
- one entity a line: ``Name - kind``, ``Name: kind``, ``- Name (kind)``, ``* Name (kind)``, ``Name (kind)``, a
  Markdown table with name and type columns;
- one line ``Entities: X - kind; Y - kind`` (or ``X (kind), Y (kind)``).

Free prose gives ``[]``: ``prose_names`` finds the post's own capitalised words, handles and hashtags that the
prose mentions, for a caller that wants names from prose (kind None).

Safe on any input: at most the first ``MAX_CHARS`` characters are read, everything is linear in the text's
length (no backtracking regular expression, a bounded number of JSON attempts), and nothing raises.
No mner imports: the standard library and ``regex`` only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import regex

MAX_CHARS = 20_000
MAX_NAME_WORDS = 12  # a longer "name" is a sentence, not a name
MAX_KIND_WORDS = 8  # of a kind after a dash or a colon on a line of its own (a sentence else)
MAX_LONE_NAME_WORDS = 6  # of the name of a lone line without a header
MAX_JSON_TRIES = 6

_NAME_KEYS = ("name", "entity", "text", "entity_name", "mention", "value", "span", "word", "surface")
_KIND_KEYS = ("type", "kind", "label", "category", "entity_type", "class", "tag", "ner", "entity_kind")
_NOT_A_NAME = {
    "none",
    "n/a",
    "na",
    "nil",
    "null",
    "nothing",
    "no entities",
    "no named entities",
    "not applicable",
    "unknown",
    "",
}
_HEADER = regex.compile(
    r"(?:named[ \t]{0,3}|recogni[sz]ed[ \t]{0,3}|extracted[ \t]{0,3})?entit(?:y|ies)(?:[ \t]{0,3}list)?[ \t]{0,3}:",
    regex.IGNORECASE,
)
_REASONING = regex.compile(r"(?i:reasoning)[ \t]{0,3}:|Reasoning(?=[A-Z])")
# "1." / "1)" at the start, or after a space, a bracket or punctuation ("(city)2. Chicago"), not inside a number
# (after a letter only where it is the next number: "1. Paris2. France")
_MARKER = regex.compile(r"(?<![\d_./-])(\d{1,3})[.)](?!\d)")
_FENCE = regex.compile(r"```[ \t]{0,3}(?:json|JSON)?[ \t]{0,3}\n?")
_CONTAINER = regex.compile(r"entit|result|item|list|output|data|answer|ner|mention", regex.IGNORECASE)
_JSON_NAME = regex.compile(
    r'"(?:name|entity|text|entity_name|mention)"[ \t\n]{0,5}:[ \t\n]{0,5}"([^"\n]{1,200})"', regex.IGNORECASE
)
_JSON_KIND = regex.compile(
    r'"(?:type|kind|label|category|entity_type)"[ \t\n]{0,5}:[ \t\n]{0,5}"([^"\n]{1,200})"', regex.IGNORECASE
)
_BULLET = regex.compile(r"^(?:[-*•·+]|\d{1,3}[.)](?!\d))[ \t]*")
_WORD = regex.compile(r"[^\W_]+")
_DASHES = (" - ", " – ", " — ", " -- ")
_QUOTES = "\"'`*“”‘’ \t"  # around a table cell


def read_entities(text: str | None) -> list[tuple[str, str | None]]:
    """(name, kind or None) of each entity a context text lists, in its order, without repeats; [] where it
    lists none (free prose, "None", empty, not a string)."""
    try:
        if not isinstance(text, str) or not text.strip():
            return []
        text = text[:MAX_CHARS].replace("（", "(").replace("）", ")")
        found = _from_json(text)
        if found is None and text.lstrip().startswith(("[", "{", "```")):
            found = _salvage_json(text) or None
            if found is None and text.lstrip()[:2] in ("[{", '{"', "``"):
                found = []  # JSON that holds no entity: not a text list
        if found is None:
            found = _from_text(text)
        return _unique(found)
    except Exception:  # noqa: BLE001 - a context text is data: never let one stop a run
        return []


def _unique(items: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    seen, out = set(), []
    for name, kind in items:
        name = _clean_name(name)
        kind = _clean_kind(kind)
        if name is None or (name, kind) in seen:
            continue
        seen.add((name, kind))
        out.append((name, kind))
    return out


_PAIRS = {'"': '"', "'": "'", "`": "`", "“": "”", "‘": "’", "*": "*"}


def _unquote(text: str) -> str:
    """Whitespace squeezed, ``**bold**`` and surrounding quotes of one kind removed."""
    text = " ".join(text.split()).replace("**", "")
    while len(text) >= 2 and _PAIRS.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text


def _clean_name(name: object) -> str | None:
    if not isinstance(name, str):
        return None
    name = _unquote(name).rstrip(",;:").strip()
    if (
        name.endswith(")") and "(" in name
    ):  # "Royal Mail (@royalmailnews)", "D.O.A. (1950)": the name before it
        head = name[: name.rfind("(")].strip()
        if head and _WORD.search(head) and head.count("(") == head.count(")"):
            name = _unquote(head)
    if name.lower().rstrip(".") in _NOT_A_NAME or not _WORD.search(name):
        return None
    if len(name.split()) > MAX_NAME_WORDS or len(name) > 100:
        return None
    low = name.lower()
    if "no named entit" in low or low.startswith(("there are no", "there is no", "no entit")):
        return None
    return name


def _clean_kind(kind: object) -> str | None:
    if not isinstance(kind, str):
        return None
    kind = _unquote(kind).rstrip(",;:").strip()
    if not kind or not _WORD.search(kind) or len(kind) > 200:
        return None
    return kind


# ------------------------------------------------------------------------------------------------ JSON


def _json_starts(text: str) -> list[int]:
    """Where a JSON value may begin: inside a code fence, the first ``[`` and ``{``; a few at most."""
    starts: list[int] = []
    fence = _FENCE.search(text)
    if fence is not None:
        i = fence.end()
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        starts.append(i)
    for bracket in "[{":
        i = text.find(bracket)
        if i >= 0:
            starts.append(i)
    return sorted(set(starts))[:MAX_JSON_TRIES]


def _from_json(text: str) -> list[tuple[str, str | None]] | None:
    """The entities of the first JSON value in the text that holds some; None when none does."""
    decoder = json.JSONDecoder()
    for start in _json_starts(text):
        if start >= len(text) or text[start] not in "[{":
            continue
        try:
            value, _ = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            continue
        found = _json_entities(value, depth=0)
        if found:
            return found
    return None


def _get(obj: dict, keys: Sequence[str]):
    lowered = {str(k).lower().replace(" ", "_"): v for k, v in obj.items()}
    for key in keys:
        value = lowered.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _json_entities(value, depth: int) -> list[tuple[str, str | None]]:
    if depth > 4:
        return []
    if isinstance(value, list):
        out = []
        for item in value[:500]:
            if isinstance(item, dict):
                name = _get(item, _NAME_KEYS)
                if name is not None:
                    out.append((name, _get(item, _KIND_KEYS)))
            elif isinstance(item, str):
                parsed = _item(item)
                if parsed is not None:
                    out.append(parsed)
            elif isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
                out.append((item[0], item[1]))
        return out
    if isinstance(value, dict):
        name = _get(value, _NAME_KEYS)  # one entity as an object
        if name is not None and not any(isinstance(v, list) for v in value.values()):
            return [(name, _get(value, _KIND_KEYS))]
        lists = {str(k): v for k, v in value.items() if isinstance(v, list)}
        if (
            lists
            and all(v and all(isinstance(x, str) for x in v) for v in lists.values())
            and not any(_CONTAINER.search(k) for k in lists)
        ):
            return [(x, k) for k, v in lists.items() for x in v]  # {"person": ["Kobe"], "city": [...]}
        for item in value.values():  # an array of entities under any key
            if isinstance(item, list | dict):
                found = _json_entities(item, depth + 1)
                if found:
                    return found
        if value and all(isinstance(v, str) for v in value.values()):
            return [(str(k), v) for k, v in value.items()]  # {"Kobe": "person", ...}
    return []


def _salvage_json(text: str) -> list[tuple[str, str | None]]:
    """Name and kind values of JSON cut short or broken: each ``"name": "X"`` with the first ``"type": "Y"``
    before the next name."""
    names = list(_JSON_NAME.finditer(text))
    kinds = list(_JSON_KIND.finditer(text))
    out, k = [], 0
    for i, m in enumerate(names):
        stop = names[i + 1].start() if i + 1 < len(names) else len(text)
        while k < len(kinds) and kinds[k].start() < m.end():
            k += 1
        kind = kinds[k].group(1) if k < len(kinds) and kinds[k].start() < stop else None
        out.append((m.group(1), kind))
    return out


# ------------------------------------------------------------------------------------------------ text


def _from_text(text: str) -> list[tuple[str, str | None]]:
    header = _HEADER.search(text)
    body = text[header.end() :] if header is not None else text
    end = _REASONING.search(body)
    if end is not None:
        body = body[: end.start()]
    numbered = _numbered(body)
    if numbered:
        return numbered
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if any(line.startswith("|") for line in lines):
        table = _table(lines)
        if table:
            return table
    if len(lines) > 1:
        return [item for line in lines if (item := _line_item(line, header is not None)) is not None]
    if header is None:
        if not lines:
            return []
        item = _item(lines[0], strict=True)  # a lone line: one entity, or prose
        return [item] if item is not None and item[1] is not None else []
    one = lines[0] if lines else ""
    for sep in (";", ","):
        if sep in one:
            parts = [_item(part) for part in one.split(sep)]
            items = [p for p in parts if p is not None]
            if sep == ";" or (items and all(p is not None and p[1] is not None for p in parts)):
                return items
    item = _item(one)
    return [item] if item is not None else []


def _numbered(body: str) -> list[tuple[str, str | None]]:
    """Items of a list numbered 1, 2, 3 ... (a number or two skipped, or a restart at 1, allowed); [] where the
    body has none."""
    cuts: list[tuple[int, int]] = []  # (start of the marker, end of the marker)
    expected = 1
    for m in _MARKER.finditer(body):
        number = int(m.group(1))
        after_letter = m.start() > 0 and body[m.start() - 1].isalpha()
        if after_letter:
            if cuts and number == expected:
                cuts.append((m.start(), m.end()))
                expected = number + 1
            continue
        if number == 1 or (cuts and expected <= number <= expected + 2):
            cuts.append((m.start(), m.end()))
            expected = number + 1
    if not cuts:
        return []
    out = []
    for k, (_, end) in enumerate(cuts):
        stop = cuts[k + 1][0] if k + 1 < len(cuts) else len(body)
        item = _item(body[end:stop])
        if item is not None:
            out.append(item)
    return out


def _table(lines: list[str]) -> list[tuple[str, str | None]]:
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in lines
        if line.startswith("|")
    ]
    rows = [r for r in rows if not all(set(cell) <= set("-: ") for cell in r)]  # the |---| row
    if len(rows) < 2:
        return []
    head = [cell.lower().strip(_QUOTES) for cell in rows[0]]
    name_col = next(
        (i for i, h in enumerate(head) if any(k in h for k in ("name", "entity", "mention", "text"))), 0
    )
    kind_col = next(
        (
            i
            for i, h in enumerate(head)
            if i != name_col and any(k in h for k in ("type", "kind", "label", "category"))
        ),
        None,
    )
    out = []
    for row in rows[1:]:
        if name_col < len(row):
            kind = row[kind_col] if kind_col is not None and kind_col < len(row) else None
            out.append((row[name_col], kind))
    return out


def _line_item(line: str, listed: bool) -> tuple[str, str | None] | None:
    """One line of a one-entity-a-line list; a line that reads as prose gives None."""
    bullet = _BULLET.match(line)
    body = line[bullet.end() :] if bullet else line
    head = _HEADER.match(body)
    if head is not None:  # "Entities:" alone on its line, or "Entities: X - kind; Y - kind"
        rest = body[head.end() :].strip()
        return None if not rest or ";" in rest else _item(rest)
    item = _item(body)
    if item is None:
        return None
    if not (bullet or listed) and item[1] is None:
        return None  # a bare line without a bullet, a kind or a header is prose
    return item


def _item(segment: str, strict: bool = False) -> tuple[str, str | None] | None:
    """``Name (kind)``, ``Name - kind``, ``Name: kind`` or ``Name``. ``strict`` (a lone line, which may be a
    sentence): the whole segment is the item, its name short and a dash's or colon's kind short."""
    s = segment.strip().strip(",;").strip()
    if not s:
        return None
    s = s.replace("**", "")
    if s.endswith(")"):  # "Name (kind)", "Tower(location)", "(+) (brand)": the bracket that closes the item
        depth = 0
        for i in range(len(s) - 1, -1, -1):
            ch = s[i]
            if ch == ")":
                depth += 1
            elif ch == "(":
                depth -= 1
                if depth == 0:
                    if i > 0:
                        return _pair(s[:i], s[i + 1 : -1], bracketed=True, strict=strict)
                    break
    opening = -1 if strict else s.find("(")
    if opening > 0:  # "Name (kind) and more"
        depth = 0
        for i in range(opening, len(s)):
            ch = s[i]
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    return _pair(s[:opening], s[opening + 1 : i], bracketed=True)
        # no closing bracket: the other forms
    for dash in _DASHES:
        k = s.find(dash)
        if k > 0:
            return _pair(s[:k], s[k + len(dash) :], strict=strict)
    k = s.find(":")
    if 0 < k < len(s) - 1 and s[k + 1] in " \t":
        return _pair(s[:k], s[k + 1 :], strict=strict)
    if len(s.split()) > MAX_NAME_WORDS:
        return None
    return (s, None)


def _pair(
    name: str, kind: str, bracketed: bool = False, strict: bool = False
) -> tuple[str, str | None] | None:
    name, kind = name.strip(), kind.strip()
    if not name or len(name.split()) > (MAX_LONE_NAME_WORDS if strict else MAX_NAME_WORDS):
        return None
    if strict and not bracketed and len(kind.split()) > MAX_KIND_WORDS:
        return None
    return (name, kind or None)


# ----------------------------------------------------------------------------------------------- prose

_STOP = {
    "a", "an", "and", "at", "but", "by", "for", "from", "he", "her", "his", "i", "if", "in", "is", "it", "its",
    "me", "my", "no", "not", "of", "oh", "on", "or", "our", "rt", "she", "so", "that", "the", "their", "them",
    "there", "these", "they", "this", "to", "us", "via", "was", "we", "what", "when", "where", "who", "why",
    "with", "you", "your", "yes", "new", "happy", "good", "great", "today", "just", "here", "now",
}  # fmt: skip


def prose_text(text: str | None) -> str:
    """The prose of a context text: what follows ``Reasoning:``, else the whole text (at most MAX_CHARS)."""
    if not isinstance(text, str):
        return ""
    text = text[:MAX_CHARS]
    found = _REASONING.search(text)
    return text[found.end() :] if found is not None else text


def _core(token: str) -> str:
    return token[1:] if len(token) > 1 and token[0] in "@#＠＃" else token


def prose_names(tokens: Sequence[str], prose: str | None) -> list[tuple[str, None]]:
    """Names of the post that free prose mentions: runs of capitalised tokens, handles and hashtags whose
    words all occur in the prose (handles and hashtags by their text after ``@``/``#``, case aside; other
    words as written); longest first, each token in one name at most. Kinds are None."""
    try:
        if not isinstance(prose, str) or not prose:
            return []
        words = prose[:MAX_CHARS]
        exact = set(_WORD.findall(words))
        lower = {w.lower() for w in exact}
        out: list[tuple[str, None]] = []
        n = len(tokens)
        i = 0
        while i < n:
            token = tokens[i]
            if token[:1] in "@#＠＃" and len(token) > 1:
                core = _core(token)
                if core.lower() in lower or all(w.lower() in lower for w in _WORD.findall(core)):
                    out.append((token, None))
                i += 1
                continue
            j = i
            while j < n and tokens[j][:1].isupper() and _WORD.fullmatch(tokens[j]):
                j += 1
            if j == i:
                i += 1
                continue
            run = tokens[i:j]
            k = 0
            while k < len(run):  # the longest sub-run from k whose words all occur in the prose (linear)
                best = k
                while best < len(run) and run[best] in exact:
                    best += 1
                if best - k == 1 and run[k].lower() in _STOP:
                    best = 0
                if best > k:
                    out.append((" ".join(run[k:best]), None))
                    k = best
                else:
                    k += 1
            i = j
        return out
    except Exception:  # noqa: BLE001
        return []
