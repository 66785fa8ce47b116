"""The knowledge stage: a multimodal KG store, its importers, candidate retrieval, and the paper's
n-hop image-knowledge search (§3.2, Fig. 3).

Per post::

    from mner.knowledge import open_kg, post_knowledge
    kg = open_kg("KG.sqlite")
    knowledge = post_knowledge(kg, tokens, image_vector)   # image_vector: np.ndarray or None
    knowledge.triples      # (("kobe bryant", "isA", "basketball player"), ...)
    knowledge.coarse_type  # "PER"
    knowledge.path         # "image" | "text" | "name" | "none"

Modules: ``names`` (keys, mentions), ``index`` (trigram name index), ``store`` (the interface and the
SQLite store), ``sources`` (what a KG is built from) / ``importers`` / ``gazetteers`` / ``concepts`` / ``builder`` (writing a KG),
``search`` (the image-knowledge search).
"""

from mner.knowledge.builder import ImportReport
from mner.knowledge.names import Mention, find_mentions, name_key
from mner.knowledge.search import (
    NO_KNOWLEDGE,
    POLICIES,
    Knowledge,
    SearchCaps,
    image_knowledge,
    post_candidates,
    post_knowledge,
)
from mner.knowledge.sources import KGSources, build_kg
from mner.knowledge.store import Candidate, KGEntity, KnowledgeStore, SqliteKG

__all__ = [
    "NO_KNOWLEDGE",
    "POLICIES",
    "Candidate",
    "ImportReport",
    "KGEntity",
    "KGSources",
    "Knowledge",
    "KnowledgeStore",
    "Mention",
    "SearchCaps",
    "SqliteKG",
    "build_kg",
    "find_mentions",
    "image_knowledge",
    "name_key",
    "open_kg",
    "post_candidates",
    "post_knowledge",
]


def open_kg(path, writable: bool = False) -> SqliteKG:
    """Open a KG file built by ``mner kg build``; raises MnerInputError if it is not one."""
    return SqliteKG(path, writable=writable)
