"""Name keys, trigram codes, mention finding, and the name index against a brute-force scan."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mner.data import MnerInputError, split_handle, tokenize
from mner.knowledge.index import NameIndex, build_index, name_scores
from mner.knowledge.names import check_mention, find_mentions, name_key, trigram_codes


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Apple Inc.", "apple inc"),
        ("U.S.", "us"),
        ("Macy's", "macys"),
        ("Kōbe", "kobe"),
        ("  New   York City!! ", "new york city"),
        ("Chelsea F.C.", "chelsea fc"),
        ("AT&T", "at t"),
        ("🇺🇸", ""),
    ],
)
def test_name_key(text, key):
    assert name_key(text) == key


@pytest.mark.parametrize(
    ("token", "query"),
    [
        ("#NewYork", "New York"),
        ("@KobeBryant", "Kobe Bryant"),
        ("#nyc", "nyc"),
        ("#NBAFinals", "NBA Finals"),
        ("@real_madrid", "real madrid"),
        ("#Rio2016", "Rio 2016"),
    ],
)
def test_split_handle(token, query):
    assert split_handle(token) == query


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("RT @KobeBryant : Lakers win tonight in LA #NBA", ["Kobe Bryant", "Lakers", "LA", "NBA"]),
        ("Chelsea is sleeping", ["Chelsea"]),
        ("Happy Birthday to John Smith !", ["John Smith"]),
        ("The Bank of England raises rates", ["Bank of England"]),
        ("Watching #NewYork from the Empire State Building", ["New York", "Empire State Building"]),
        ("lol this is so good #love", []),
        ("RT : I think so", []),
    ],
)
def test_find_mentions(text, mentions):
    assert [m.query for m in find_mentions(tokenize(text))] == mentions


def test_mention_spans_are_token_offsets():
    tokens = tokenize("Kobe Bryant scores 81 for the #Lakers")
    found = find_mentions(tokens)
    assert [(m.start, m.end, m.text) for m in found] == [(0, 2, "Kobe Bryant"), (6, 7, "#Lakers")]


def test_over_long_tokens_are_not_mentions():
    assert find_mentions(["Kobe", "A" * 10_000]) == find_mentions(["Kobe"])


def test_runs_are_cut_at_six_tokens():
    tokens = ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta"]
    assert [(m.start, m.end) for m in find_mentions(tokens)] == [(0, 6), (6, 8)]


@pytest.mark.parametrize(
    ("mention", "message"),
    [
        ("", "mention '' is empty: it has no letters or digits"),
        ("?!", "mention '?!' is empty: it has no letters or digits"),
        ("x" * 10_000, "mention is 10,000 characters long; at most 200 are looked up"),
    ],
)
def test_bad_mentions(mention, message):
    with pytest.raises(MnerInputError) as err:
        check_mention(mention)
    assert str(err.value) == message


def test_trigram_codes_are_distinct_padded_trigrams():
    codes = trigram_codes("banana")  # " ba", "ban", "ana", "nan", "na " ("ana" and "nan" twice)
    assert len(codes) == 5
    assert np.all(np.diff(codes) > 0)


# --------------------------------------------------------------------------------------- the index


def _index(names: list[str]) -> tuple[NameIndex, list[str]]:
    keys = sorted({name_key(n) for n in names}, key=len)
    n = len(keys)
    arrays = build_index(keys, np.arange(n), np.arange(n), np.zeros(n, dtype=np.int64))
    return NameIndex(arrays), keys


def test_postings_equal_a_naive_inverted_index():
    index, keys = _index(["banana", "Kobe Bryant", "ana", "b", "New York City", "Kobe", "kobe beef"])
    arrays = index.arrays
    naive: dict[int, set[int]] = {}
    for position, key in enumerate(keys):
        for gram in trigram_codes(key).tolist():
            naive.setdefault(gram, set()).add(position)
    built = {
        int(g): set(arrays.postings[arrays.offsets[i] : arrays.offsets[i + 1]].tolist())
        for i, g in enumerate(arrays.grams)
    }
    assert built == naive
    assert [index.key(p) for p in range(len(index))] == keys


def test_whole_word_partial_matches_only():
    scores = name_scores("kobe", ["kobe bryant", "kobenhavn", "kobe"]).tolist()
    assert scores[0] == pytest.approx(90)  # "kobe" is a word of "kobe bryant": WRatio's partial match
    assert scores[1] < 70  # "kobe" inside "kobenhavn" is not a word: plain ratio
    assert scores[2] == 100
    assert name_scores("kobe bryant", ["be"]).tolist()[0] < 35


def _random_names(rng: random.Random, n: int) -> list[str]:
    syllables = ["ka", "lo", "be", "ry", "an", "to", "mi", "sa", "ne", "ur", "os", "ki", "da", "el"]

    def word() -> str:
        return "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))

    # distinct words per name: "mi mi" would score 95 for "da mi" on WRatio's token-set branch while
    # sharing few trigrams, a case the index does not promise to find
    return [" ".join(dict.fromkeys(word() for _ in range(rng.randint(1, 3)))) for _ in range(n)]


def test_search_finds_the_brute_force_top_5():
    """The index's top 5 equal a scan of every name with the same scorer, rank by rank, for every
    brute-force match scoring 85 or more (ties: any name of equal score); weaker matches that share
    few trigrams may be missed (benchmarks/knowledge.md measures how often)."""
    rng = random.Random(0)
    index, keys = _index(_random_names(rng, 3000))
    queries = [keys[rng.randrange(len(keys))] for _ in range(40)] + ["kalobe", "ryanto miki", "sa", "ne ka"]
    queries += ["".join(q.split()) for q in queries[:10]] + [q[:-1] for q in queries[10:20] if len(q) > 3]
    for query in queries:
        _, scores = index.search(query, k=5)
        brute = np.sort(name_scores(query, keys))[::-1][:5]
        strong = brute[brute >= 85].tolist()
        assert scores[: len(strong)].tolist() == pytest.approx(strong), query


def _reference_scores(query: str, names: list[str]) -> np.ndarray:
    """The definition, computed the slow way: WRatio, then partial matches that are not of whole
    words lowered to the plain ratio."""
    from rapidfuzz import fuzz

    out = []
    for name in names:
        score = fuzz.WRatio(query, name)
        n, m = len(query), len(name)
        if score > 0 and max(n, m) >= 1.5 * min(n, m):
            whole_words = f" {name} " in f" {query} " if m < n else f" {query} " in f" {name} "
            score = score if whole_words else min(score, fuzz.ratio(query, name))
        out.append(score)
    return np.array(out)


def test_name_scores_equal_their_definition():
    rng = random.Random(1)
    names = _random_names(rng, 2000) + ["a", "ka lo", "lo", "ka lo be ry an to mi sa ne ur os"]
    for query in names[:60] + ["a", "ka", "x y z w v u t s r q p", "kalo be"]:
        assert name_scores(query, names).tolist() == pytest.approx(
            _reference_scores(query, names).tolist(), abs=1e-3
        ), query
