"""Conceptual knowledge and coarse types, derived from what the importers gave.

Conceptual triples ``(entity, isA, concept)``, most specific first (``rank``):
0. the head noun phrase of the Wikidata description: "American basketball player" → "basketball player";
1. CoDEx / Wikidata instance-of and occupation classes, gazetteer classes ("city", "country");
2. profession / occupation tails: ``(Kobe Bryant, profession, actor)`` → "actor";
3. Freebase relation domains: ``/people/person/…`` → "person", ``/film/film/…`` → "film".

Coarse type (PER/LOC/ORG/OTHER, or none for concepts such as genres and professions): a weighted vote
of relation domains and ranges (one vote per triple), class and description head nouns, and explicit
types (gazetteers).
"""

from __future__ import annotations

import re

import numpy as np


def _words(text: str) -> list[str]:
    return text.split()


TYPE_SLOTS = ("PER", "LOC", "ORG", "OTHER", None)  # None: a concept, not a named entity
_SLOT = {t: i for i, t in enumerate(TYPE_SLOTS)}

# Freebase "/namespace/type" of a relation's head → coarse type; more specific prefixes first.
_FREEBASE_HEAD = [
    ("/organization/role", None),
    ("/location/", "LOC"),
    ("/organization/", "ORG"),
    ("/people/person/", "PER"),
    ("/people/deceased_person/", "PER"),
    ("/film/actor/", "PER"),
    ("/film/director/", "PER"),
    ("/film/producer/", "PER"),
    ("/film/writer/", "PER"),
    ("/music/group_member/", "PER"),
    ("/music/composer/", "PER"),
    ("/music/lyricist/", "PER"),
    ("/sports/pro_athlete/", "PER"),
    ("/soccer/football_player/", "PER"),
    ("/tv/tv_actor/", "PER"),
    ("/tv/tv_producer/", "PER"),
    ("/tv/tv_writer/", "PER"),
    ("/tv/tv_personality/", "PER"),
    ("/celebrities/celebrity/", "PER"),
    ("/government/politician/", "PER"),
    ("/base/popstra/celebrity/", "PER"),
    ("/book/author/", "PER"),
    ("/olympics/olympic_athlete/", "PER"),
    ("/royalty/", "PER"),
    ("/architecture/architect/", "PER"),
    ("/travel/travel_destination/", "LOC"),
    ("/olympics/olympic_participating_country/", "LOC"),
    ("/base/biblioness/bibs_location/", "LOC"),
    ("/base/aareas/", "LOC"),
    ("/base/locations/", "LOC"),
    ("/government/governmental_jurisdiction/", "LOC"),
    ("/sports/sports_team_location/", "LOC"),
    ("/education/educational_institution", "ORG"),
    ("/education/university/", "ORG"),
    ("/sports/sports_team/", "ORG"),
    ("/sports/professional_sports_team/", "ORG"),
    ("/soccer/football_team/", "ORG"),
    ("/american_football/football_team/", "ORG"),
    ("/basketball/basketball_team/", "ORG"),
    ("/baseball/baseball_team/", "ORG"),
    ("/ice_hockey/hockey_team/", "ORG"),
    ("/business/business_operation/", "ORG"),
    ("/business/employer/", "ORG"),
    ("/music/record_label/", "ORG"),
    ("/film/film_distributor/", "ORG"),
    ("/film/production_company/", "ORG"),
    ("/tv/tv_network/", "ORG"),
    ("/broadcast/", "ORG"),
    ("/government/governmental_body/", "ORG"),
    ("/government/political_party/", "ORG"),
    ("/sports/sports_league/", "ORG"),
    ("/music/musical_group/", "ORG"),
    ("/base/schemastaging/organization_extra/", "ORG"),
    ("/film/film/", "OTHER"),
    ("/tv/tv_program/", "OTHER"),
    ("/award/award_ceremony/", "OTHER"),
    ("/award/award_category/", "OTHER"),
    ("/olympics/olympic_games/", "OTHER"),
    ("/time/event/", "OTHER"),
    ("/military/military_conflict/", "OTHER"),
    ("/music/album/", "OTHER"),
    ("/book/", "OTHER"),
    ("/cvg/", "OTHER"),
    ("/people/ethnicity/", "OTHER"),
    ("/sports/sports_championship_event/", "OTHER"),
    ("/film/film_series/", "OTHER"),
    ("/music/composition/", "OTHER"),
    ("/music/genre/", None),
    ("/music/instrument/", None),
    ("/music/performance_role/", None),
    ("/people/profession/", None),
    ("/sports/sports_position/", None),
    ("/education/educational_degree/", None),
    ("/media_common/netflix_genre/", None),
    ("/film/film_genre/", None),
    ("/people/cause_of_death/", None),
    ("/business/job_title/", None),
    ("/education/field_of_study/", None),
    ("/food/", None),
    ("/people/marriage_union_type/", None),
    ("/film/film_job/", None),
    ("/sports/sport/", None),
    ("/government/government_office_category/", None),
    ("/olympics/olympic_sport/", None),
    ("/tv/tv_genre/", None),
    ("/people/gender/", None),
    ("/measurement_unit/", None),
]
# A relation's last name part (snake case) → the coarse type of its tail.
_TAIL = {
    "LOC": _words(
        "nationality place_of_birth place_of_death birth_place death_place location country "
        "citytown state_province_region contains capital county place_founded "
        "featured_film_locations hometown residence city state populationplace population_place "
        "headquarter is_part_of largest_city film_release_region location_city ground"
    ),
    "PER": _words(
        "actor directed_by produced_by written_by executive_produced_by spouse sibling parents "
        "children starring director producer writer cinematography editing music_composer "
        "influenced_by influenced key_person leader_name child parent relative partner athlete"
    ),
    "ORG": _words(
        "company institution team record_label distributors distributor production_companies "
        "school sports_team employer political_party party alma_mater affiliation league"
    ),
    "OTHER": _words(
        "film films honored_for award_nominated_for nominated_for ceremony olympics event "
        "program album ethnicity"
    ),
    None: _words(
        "profession occupation genre instrument role position gender religion currency language "
        "languages degree major_field_of_study cause_of_death film_format medium type_of_union "
        "film_release_distribution_medium sport stylistic_origin derivative format time_zone "
        "government_type"
    ),
}
_TAIL_TYPE = {name: t for t, names in _TAIL.items() for name in names}
# DBpedia relations (snake case) → the coarse type of the head.
_DBPEDIA_HEAD = {
    **dict.fromkeys(
        _words(
            "birth_place death_place spouse occupation alma_mater hometown residence "
            "influenced_by influenced nationality partner relative child parent "
            "education"
        ),
        "PER",
    ),
    **dict.fromkeys(
        _words("starring director producer writer cinematography editing music_composer distributor format"),
        "OTHER",
    ),
    **dict.fromkeys(_words("time_zone government_type capital largest_city leader_name"), "LOC"),
    **dict.fromkeys(_words("headquarter key_person"), "ORG"),
}
_SKIP_NAMESPACES = {
    "base",
    "common",
    "user",
    "freebase",
    "dataworld",
    "type",
    "influence",
    "media_common",
    "award",
}
_SKIP_DOMAINS = {
    "topic",
    "ranked_item",
    "organization_member",
    "olympic_participating_country",
    "statistical_region",
    "hud_foreclosure_area",
    "hud_county_place",
    "dated_location",
    "location",
    "film_subject",
    "travel_destination",
    "influence_node",
    "deceased_person",
    "person_extra",
    "organization_extra",
}
_DOMAIN_NAMES = {
    "citytown": "city",
    "pro_athlete": "professional athlete",
    "us_county": "county",
    "business_operation": "business",
    "tv_program": "television program",
}
PROFESSION_RELATIONS = {"profession", "occupation"}

# Head nouns of concepts ("basketball player" → "player") → coarse type.
_HEAD_NOUN = {
    "PER": _words(
        "player actor actress singer politician footballer musician writer director rapper "
        "songwriter comedian athlete model journalist businessman businesswoman presenter coach "
        "boxer wrestler golfer cyclist swimmer dancer painter poet author novelist composer "
        "guitarist drummer pianist dj astronaut queen king prince princess pope philosopher "
        "scientist physicist chemist economist lawyer judge youtuber personality host human person "
        "entrepreneur cricketer sprinter racer skater manager referee screenwriter filmmaker "
        "photographer designer chef activist diplomat monarch sportsperson bassist vocalist "
        "saxophonist"
    ),
    "LOC": _words(
        "city town village country state county capital province region river lake mountain island "
        "borough municipality neighborhood neighbourhood district commune continent street stadium "
        "arena airport peninsula sea ocean desert valley seat territory metropolis suburb hamlet "
        "archipelago area republic kingdom nation venue"
    ),
    "ORG": _words(
        "company band club team university college school organization organisation party "
        "corporation manufacturer network channel agency association league federation institute "
        "newspaper magazine label retailer airline bank church government ministry department "
        "council foundation charity studio publisher broadcaster conglomerate orchestra choir duo "
        "trio business enterprise group franchise station"
    ),
    "OTHER": _words(
        "film series album song single novel book game event festival award prize tournament "
        "championship season war battle election language software product smartphone brand "
        "holiday programme program sitcom show episode musical play opera cup ethnicity people "
        "console"
    ),
}
_HEAD_NOUN_TYPE = {w: t for t, words in _HEAD_NOUN.items() for w in words}

_CUT = re.compile(
    r",|;|:| (?:who|that|which|in|from|based|born|for|by|at|on|with|and|or|located|between|"
    r"whose|since|during|known|created|directed|written|produced|released|published|founded|"
    r"starring|featuring|under|to|as|grown|made|held|played|sold|built|run|owned|operated|"
    r"used|spoken|named|formed|\w+ed (?:by|in|on|at|from|for|to|as|with)) "
)
_PARENS = re.compile(r"\([^)]*\)")
_REJECT = {
    "disambiguation page",
    "list article",
    "given name",
    "family name",
    "category",
    "template",
    "human settlement",
    "topic",
    "",
}


def snake(name: str) -> str:
    """The last part of a relation name in snake case: ``…/ontology/birthPlace>`` → ``birth_place``."""
    last = name.strip("<>").rstrip("/").split("/")[-1].split("#")[-1].split(".")[-1]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", last).lower()


def description_concept(description: str | None) -> str | None:
    """The head noun phrase of a description: "American basketball player" → "basketball player"."""
    if not description:
        return None
    text = _PARENS.sub(" ", description).strip()
    words = _CUT.split(f"{text} ", maxsplit=1)[0].split()
    while words and (words[0][:1].isupper() or words[0][:1].isdigit() or words[0] in ("a", "an", "the")):
        words = words[1:]  # demonyms, names and years before the noun phrase
    if "of" in words:  # "county seat of El Paso County" → "county seat"; "producer of computers" stays
        at = words.index("of")
        follow = words[at + 1 :]
        keep_of = at == 1 and len(follow) == 1 and follow[0].islower() and follow[0] not in ("a", "an", "the")
        words = words if keep_of else words[:at]
    concept = " ".join(words[-4:]).strip(" -").lower()
    if concept in _REJECT or not re.search(r"[a-z]", concept):
        return None
    return concept


def head_noun_type(concept: str) -> str | None | bool:
    """Coarse type of a concept's head noun; False when the head noun says nothing."""
    words = concept.replace("-", " ").split()
    if not words:
        return False
    if words[-1] == "of" or "of" in words:
        words = words[: words.index("of")]
    head = words[-1] if words else ""
    return _HEAD_NOUN_TYPE.get(head, _HEAD_NOUN_TYPE.get(head.rstrip("s"), False))


def _relation_rules(name: str) -> tuple[str | None | bool, str | None | bool, str | None]:
    """(head type, tail type, head domain concept) of a relation; False = no evidence."""
    head: str | None | bool = False
    domain = None
    if name.startswith("/"):
        for prefix, coarse in _FREEBASE_HEAD:
            if name.startswith(prefix):
                head = coarse
                break
        parts = name.split("/")
        if len(parts) > 3 and parts[1] not in _SKIP_NAMESPACES and parts[2] not in _SKIP_DOMAINS:
            domain = _DOMAIN_NAMES.get(parts[2], parts[2].replace("_", " "))
    else:
        head = _DBPEDIA_HEAD.get(snake(name), False)
    tail = _TAIL_TYPE.get(snake(name), False)
    return head, tail, domain


def derive_concepts_and_types(builder, votes: list[tuple[int, str | None, float]]) -> None:
    """Write conceptual triples and coarse types into the builder's file."""
    n = len(builder.keys) + 1
    tally = np.zeros((n, len(TYPE_SLOTS)), dtype=np.float64)  # shape: (entities + 1, 5)
    for handle, coarse, weight in votes:
        tally[handle, _SLOT[coarse]] += weight
    _relation_evidence(builder, tally)
    for i, description in enumerate(builder.descriptions):
        concept = description_concept(description)
        if concept:
            builder.add_concept(i + 1, concept, "description", 0)
            coarse = head_noun_type(concept)
            if coarse is not False:
                tally[i + 1, _SLOT[coarse]] += 2
    best = tally.argmax(axis=1)
    typed = np.flatnonzero((tally.max(axis=1) > 0) & (best < 4))
    builder.write_types({int(h): TYPE_SLOTS[best[h]] for h in typed})


def _relation_evidence(builder, tally: np.ndarray) -> None:
    """Votes from relation domains and ranges; domain and profession concepts."""
    rules = {rid: _relation_rules(name) for name, rid in builder.relations.items()}
    rows = builder.conn.execute("SELECT head, relation, tail FROM triples").fetchall()
    if not rows:
        return
    heads, rels, tails = np.array(rows, dtype=np.int64).T
    del rows
    _slot_votes(rules, heads, rels, tails, tally)
    _domain_concepts(builder, rules, heads, rels)
    profession = [rid for name, rid in builder.relations.items() if snake(name) in PROFESSION_RELATIONS]
    is_profession = np.isin(rels, profession)
    for head, tail in zip(heads[is_profession].tolist(), tails[is_profession].tolist(), strict=True):
        label = builder.labels[tail - 1]
        if label:
            builder.add_concept(head, label, "profession", 2)


def _slot_votes(
    rules: dict, heads: np.ndarray, rels: np.ndarray, tails: np.ndarray, tally: np.ndarray
) -> None:
    """Each triple's votes for the type slots of its head and tail, by its relation's domain and range."""
    n_rel = max(rules) + 1
    head_slot = np.full(n_rel, -1)
    tail_slot = np.full(n_rel, -1)
    for rid, (head, tail, _) in rules.items():
        if head is not False:
            head_slot[rid] = _SLOT[head]
        if tail is not False:
            tail_slot[rid] = _SLOT[tail]
    for ids, slots in ((heads, head_slot[rels]), (tails, tail_slot[rels])):
        voted = slots >= 0
        # the object of a profession / genre / instrument relation is a concept: strong evidence
        weight = np.where(slots[voted] == _SLOT[None], 3.0, 1.0)
        np.add.at(tally, (ids[voted], slots[voted]), weight)


def _domain_concepts(builder, rules: dict, heads: np.ndarray, rels: np.ndarray) -> None:
    """The two most frequent domains of each entity's relations, as its concepts."""
    domains = sorted({d for _, _, d in rules.values() if d})
    domain_of = np.full(max(rules) + 1, -1)
    for rid, (_, _, d) in rules.items():
        if d:
            domain_of[rid] = domains.index(d)
    has = domain_of[rels] >= 0
    codes = np.sort(heads[has] * len(domains) + domain_of[rels][has])
    first = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]])) if len(codes) else codes[:0]
    pairs, counts = codes[first], np.diff(np.append(first, len(codes)))
    order = np.lexsort((-counts, pairs // max(len(domains), 1)))
    kept: dict[int, int] = {}
    for p in pairs[order].tolist():  # the two most frequent domains of each entity
        handle = p // len(domains)
        if kept.get(handle, 0) < 2:
            kept[handle] = kept.get(handle, 0) + 1
            builder.add_concept(handle, domains[p % len(domains)], "relation domain", 3)
