"""The paper's image-knowledge search (§3.2, Fig. 3), and ``post_knowledge``, the stage's entry point.

For a post's image vector and the candidate entities of its mentions: compare with the candidates'
own images (hop 0), then with their 1-hop neighbours' images, then 2-hop; stop at the first hop where
an image has cosine ≥ θ and return that entity's conceptual (isA) triples. Otherwise "no knowledge".

Fallback policy (``policy``), when the image cannot decide:
- ``"image-then-text"`` (default): with no post image, or no entity image anywhere in the searched
  neighbourhood, take the best text candidate (score ≥ ``min_text_score``); failing that, a
  capitalised two-word mention starting with a common first name gives the type PER (``path="name"``).
- ``"image-only"``: the paper's behaviour: no image match → no knowledge.
An image that was compared and matched nothing gives no knowledge under both policies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mner.data import MnerInputError
from mner.knowledge.names import Mention, find_mentions, name_key
from mner.knowledge.store import Candidate, KGEntity, KnowledgeStore, prior_order

POLICIES = ("image-then-text", "image-only")


@dataclass(frozen=True)
class SearchCaps:
    """Bounds on the neighbourhood search: hubs ("United States") reach thousands in two hops."""

    max_per_entity: int = 500  # neighbours taken from one hub (those with images first)
    hub_degree: int = 1000  # an entity with more triples than this is a hub
    max_frontier: int = 20_000  # entities compared at one hop


@dataclass(frozen=True)
class Knowledge:
    """What the KG says about a post: the matched entity and its isA triples as words, and how."""

    path: str  # "image": matched by image; "text": best text candidate; "name": first-name rule; "none"
    entity: KGEntity | None = None
    hop: int | None = None  # 0: a candidate's own image; 1, 2: a neighbour's
    similarity: float | None = None
    triples: tuple[tuple[str, str, str], ...] = ()
    coarse_type: str | None = None
    mention: Mention | None = None
    candidates: tuple[Candidate, ...] = field(default=(), repr=False)
    compared: int = 0  # image vectors compared

    def words(self, compact: bool = False) -> list[str]:
        """The triples as one word sequence for the model: ``kobe bryant isA basketball player …``.

        ``compact`` names each subject and relation once: ``kobe bryant isA basketball player ,
        athlete …`` (half the words for the usual 5 triples of one entity, same content)."""
        if not compact:
            return [w for triple in self.triples for part in triple for w in part.split()]
        out: list[str] = []
        last = None
        for subject, relation, obj in self.triples:
            if (subject, relation) == last:
                out.append(",")
            else:
                if out:
                    out.append(";")
                out += subject.split() + relation.split()
                last = (subject, relation)
            out += obj.split()
        return out

    def to_dict(self) -> dict:
        e = self.entity
        return {
            "path": self.path,
            "entity": None if e is None else e.key,
            "label": None if e is None else e.label,
            "type": self.coarse_type,
            "hop": self.hop,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "mention": None if self.mention is None else self.mention.text,
            "triples": [list(t) for t in self.triples],
            "compared": self.compared,
            "candidates": [c.to_dict() for c in self.candidates],
        }


NO_KNOWLEDGE = Knowledge("none")


def _query_vector(store: KnowledgeStore, vector) -> np.ndarray:
    q = np.asarray(vector, dtype=np.float32).reshape(-1)  # shape: (dim,)
    dim = store.image_dim
    if dim is not None and q.shape[0] != dim:
        raise MnerInputError(f"image vector has {q.shape[0]} dimensions, the KG's entity images have {dim}")
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm == 0:
        raise MnerInputError("image vector is zero or not finite")
    return q / norm


def _matched(
    store: KnowledgeStore,
    entity_id: int,
    hop: int | None,
    similarity: float | None,
    path: str,
    candidates: Sequence[Candidate],
    mention: Mention | None,
    compared: int,
    max_triples: int,
) -> Knowledge:
    entity = store.entity(entity_id)
    triples = tuple(store.concepts(entity_id)[:max_triples])
    return Knowledge(
        path,
        entity,
        hop,
        similarity,
        triples,
        entity.type if entity else None,
        mention,
        tuple(candidates),
        compared,
    )


def _origin(
    store: KnowledgeStore, entity: int, hop: int, candidates: Sequence[Candidate], caps: SearchCaps
) -> int:
    """The first candidate within ``hop`` of a matched entity: the one whose mention it answers."""
    if hop == 0:
        return entity
    near = store.neighbourhood(
        [entity], hops=hop, max_per_entity=caps.max_per_entity, hub_degree=caps.hub_degree
    )
    return next((c.entity.id for c in candidates if c.entity.id in near), candidates[0].entity.id)


def image_knowledge(
    store: KnowledgeStore,
    candidates: Sequence[Candidate],
    image_vector=None,
    theta: float = 0.9,
    policy: str = "image-then-text",
    caps: SearchCaps = SearchCaps(),
    min_text_score: float = 90.0,
    max_triples: int = 5,
    mentions: dict[int, Mention] | None = None,
) -> Knowledge:
    """Knowledge for a post from its candidate entities (best first) and its image vector (or None).

    Args:
        mentions: the mention each candidate came from (by entity id), to report with the result.

    Raises:
        MnerInputError: an unknown policy, or an image vector of the wrong dimension.
    """
    if policy not in POLICIES:
        raise MnerInputError(f"unknown knowledge policy {policy!r}; expected one of {', '.join(POLICIES)}")
    mentions = mentions or {}
    seen_images = 0
    # A KG with no entity images (image_dim unset: `mner kg add-images` never ran) has nothing to compare:
    # skip the hop expansion, which costs tens of ms a post around hubs, and go to the text fallback.
    if image_vector is not None and candidates and store.image_dim is not None:
        matched, seen_images = _image_match(
            store, candidates, image_vector, theta, caps, mentions, max_triples
        )
        if matched is not None:
            return matched
        if seen_images:
            return Knowledge("none", candidates=tuple(candidates), compared=seen_images)
    if policy == "image-only":
        return Knowledge("none", candidates=tuple(candidates), compared=seen_images)
    text = [c for c in candidates if c.score >= min_text_score]
    if text:
        best = text[0]
        return _matched(
            store,
            best.entity.id,
            None,
            None,
            "text",
            candidates,
            mentions.get(best.entity.id),
            seen_images,
            max_triples,
        )
    return Knowledge("none", candidates=tuple(candidates), compared=seen_images)


def _image_match(
    store: KnowledgeStore,
    candidates: Sequence[Candidate],
    image_vector,
    theta: float,
    caps: SearchCaps,
    mentions: dict[int, Mention],
    max_triples: int,
) -> tuple[Knowledge | None, int]:
    """The entity whose image is like the post's (``theta`` or more) among the candidates, then their 1-hop and
    2-hop neighbours, or None; and how many images were compared."""
    seen_images = 0
    q = _query_vector(store, image_vector)
    seen = {c.entity.id for c in candidates}
    frontier = list(dict.fromkeys(c.entity.id for c in candidates))
    for hop in range(3):
        if hop:  # the last hop needs only the neighbours that own images
            frontier = store.neighbours(
                frontier, seen, caps.max_per_entity, caps.hub_degree, images_only=hop == 2
            )
            frontier = frontier[: caps.max_frontier]
            seen.update(frontier)
        owners, vectors = store.image_vectors(frontier)
        seen_images += len(owners)
        if len(owners):
            sims = vectors @ q  # shape: (n_images,)
            best = int(np.argmax(sims))
            if sims[best] >= theta:
                entity = int(owners[best])
                mention = mentions.get(_origin(store, entity, hop, candidates, caps), None)
                knowledge = _matched(
                    store,
                    entity,
                    hop,
                    float(sims[best]),
                    "image",
                    candidates,
                    mention,
                    seen_images,
                    max_triples,
                )
                return knowledge, seen_images
        if not frontier:
            break
    return None, seen_images


def post_candidates(
    store: KnowledgeStore,
    tokens: Sequence[str],
    k: int = 5,
    max_mentions: int = 8,
    min_score: float = 60.0,
    prior: bool = False,
) -> tuple[list[Candidate], dict[int, Mention], list[Mention]]:
    """Candidates of a post's mentions, best first: (candidates, mention of each candidate, mentions).

    Args:
        prior: rank by ``mner.knowledge.store.prior_order`` rather than by name score alone (the knowledge
            channel of the shipped models was made without it).
    """
    mentions = find_mentions(tokens)[:max_mentions]
    best: dict[int, tuple[tuple, Candidate, Mention]] = {}
    for m in mentions:
        for rank, c in enumerate(store.candidates(m.query, k=k, prior=prior)):
            if c.score < min_score:
                continue
            # order: score (with the prior: its order), then longer mentions, then the store's own order
            first = prior_order(c) if prior else (-c.score,)
            order = (*first, -(m.end - m.start), rank)
            if c.entity.id not in best or order < best[c.entity.id][0]:
                best[c.entity.id] = (order, c, m)
    ranked = sorted(best.values(), key=lambda item: item[0])
    return [c for _, c, _ in ranked], {c.entity.id: m for _, c, m in ranked}, mentions


def post_knowledge(
    store: KnowledgeStore,
    tokens: Sequence[str],
    image_vector=None,
    theta: float = 0.9,
    policy: str = "image-then-text",
    k: int = 5,
    caps: SearchCaps = SearchCaps(),
    max_triples: int = 5,
) -> Knowledge:
    """The knowledge stage for one post: mentions → candidates → image search (or text fallback).

    Args:
        tokens: the post's tokens (``mner.data.tokenize`` of its text).
        image_vector: the post image's pooled vector (``mner.vision``), or None.
    """
    candidates, by_entity, mentions = post_candidates(store, tokens, k=k)
    found = image_knowledge(
        store, candidates, image_vector, theta, policy, caps, max_triples=max_triples, mentions=by_entity
    )
    if found.path != "none" or policy == "image-only" or (image_vector is not None and found.compared):
        return found
    for m in mentions:  # the first-name rule: "Kobe Smith" with no KG entity is probably a person
        words = m.query.split()
        if (
            len(words) == 2
            and words[0][:1].isupper()
            and words[1][:1].isupper()
            and store.is_person_name(words[0])
        ):
            triple = (name_key(m.query), "isA", "person")
            return Knowledge("name", None, None, None, (triple,), "PER", m, found.candidates, found.compared)
    return found
