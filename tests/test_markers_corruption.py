"""The @/# convention (mner.inputs.markers) and training-time list corruption (mner.training.corruption)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mner.inputs.markers import join, join_tags, split
from mner.training.corruption import GENERIC_KINDS, CorruptionRates, corrupt


def test_join_reads_a_lone_marker_with_the_next_token():
    tokens, found = join(["RT", "@", "jehnnybgoode", ":", "#", "NBAAwards", "tonight", "#"])
    assert tokens == ("RT", "@jehnnybgoode", ":", "#NBAAwards", "tonight", "#")
    assert found == [(0,), (1, 2), (3,), (4, 5), (6,), (7,)]


def test_a_post_without_lone_markers_is_unchanged():
    tokens = ("RT", "@jehnnybgoode", ":", "#NBAAwards")
    assert join(tokens) == (tokens, [(0,), (1,), (2,), (3,)])


def test_tags_go_back_to_the_files_tokens():
    tokens = ["Oakland", "#", "Raiders", "fan", "@", "Kobe"]
    gold = ["B-ORG", "I-ORG", "I-ORG", "O", "O", "B-PER"]
    joined, found = join(tokens)
    assert joined == ("Oakland", "#Raiders", "fan", "@Kobe")
    assert join_tags(gold, found) == ("B-ORG", "I-ORG", "O", "B-PER")
    assert split(["B-ORG", "I-ORG", "O", "B-PER"], found, len(tokens)) == gold


@given(st.lists(st.sampled_from(["@", "#", "a", "Bb", "＠"]), max_size=12))
def test_split_gives_a_tag_per_file_token(tokens):
    joined, found = join(tokens)
    assert sum(len(g) for g in found) == len(tokens)
    assert len(split(["B-PER"] * len(joined), found, len(tokens))) == len(tokens)


LIST = [("Bears", "sports team"), ("Chicago", "city"), ("Soldier Field", "stadium")]
OTHER = [("Kobe", "person"), ("Lakers", "team"), ("Chicago", "city")]


def test_no_rates_no_change():
    assert corrupt(LIST, CorruptionRates(), random.Random(1), OTHER) == LIST
    assert corrupt(None, CorruptionRates(drop=0.5), random.Random(1), OTHER) is None


def test_each_corruption():
    rng = random.Random(3)
    assert corrupt(LIST, CorruptionRates(drop=1.0), rng, OTHER) == []
    assert all(k in GENERIC_KINDS for _, k in corrupt(LIST, CorruptionRates(generic=1.0), rng, OTHER))
    wrong = corrupt(LIST, CorruptionRates(wrong=1.0), rng, OTHER, kind_type=lambda k: "ORG")
    assert [n for n, _ in wrong] == [n for n, _ in LIST] and all(k not in ("sports team",) for _, k in wrong)
    added = corrupt(LIST, CorruptionRates(spurious=1.0, spurious_names=2), rng, OTHER)
    assert added[:3] == LIST and 1 <= len(added) - 3 <= 2
    assert all(e in OTHER and e[0] != "Chicago" for e in added[3:])
    assert corrupt(LIST, CorruptionRates(swap=1.0), rng, OTHER) == OTHER
    assert corrupt(LIST, CorruptionRates(none=1.0), rng, OTHER) is None


def test_rates_are_checked():
    with pytest.raises(ValueError):
        CorruptionRates(drop=1.5)


def test_drop_rate_is_about_right():
    rng = random.Random(0)
    kept = sum(len(corrupt(LIST, CorruptionRates(drop=0.3), rng, OTHER)) for _ in range(2000))
    assert abs(kept / (3 * 2000) - 0.7) < 0.02
