"""The @/# check of issue #23: Twitter-2017 writes a mention or hashtag as two tokens (`@` `name`), Twitter-2015 as
one (`@name`). Each model tags Twitter-2017 test in both spellings; the table gives, of the gold entities that
follow a lone `@`/`#` in the file, how many the model finds in each spelling, the F1 on the file's own gold
entities, and the posts whose entities differ between the spellings.

Usage: python benchmarks/bench_markers.py --model NAME=FOLDER [--model ...] [--context] [--threads 1]
       [--report FILE | --update]

Each model is run twice: as it is (``join_markers`` on for every model trained since issue #23: a lone marker and
the token after it are read as one token, tags and spans mapped back to the file's tokens) and with
``join_markers`` switched off (what the models did before). Entities are compared on the file's tokens: the
joined spelling's predicted tags are split back with ``mner.inputs.markers.split``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from runs import publish, report_option, report_path

ROOT = Path(__file__).resolve().parents[1]
T17 = ROOT.parent / "shared" / "data" / "twitter2017"


def spans(tags) -> set[tuple[int, int, str]]:
    from mner.data import spans_from_tags

    return {(s.start, s.end, s.type) for s in spans_from_tags(tags)}


def check(runner, posts) -> dict:
    from mner.evaluate import entity_scores
    from mner.inputs.markers import MARKERS, join, join_tags, split

    joined = []
    groups = []
    for p in posts:
        tokens, found = join(p.tokens)
        groups.append(found)
        joined.append(dataclasses.replace(p, tokens=tokens, tags=join_tags(p.tags, found)))
    split_tags = runner.predict_tags(posts)
    joined_tags = [
        split(tags, found, len(p.tokens))
        for tags, found, p in zip(runner.predict_tags(joined), groups, posts, strict=True)
    ]
    after, found_split, found_joined, differ = 0, 0, 0, 0
    for p, a, b in zip(posts, split_tags, joined_tags, strict=True):
        gold = {s for s in spans(p.tags) if s[0] > 0 and p.tokens[s[0] - 1] in MARKERS}
        after += len(gold)
        found_split += len(gold & spans(a))
        found_joined += len(gold & spans(b))
        differ += spans(a) != spans(b)
    gold_tags = [list(p.tags) for p in posts]
    return {
        "after_marker": after,
        "found_split": found_split,
        "found_joined": found_joined,
        "f1_split": 100 * entity_scores(gold_tags, split_tags).f1,
        "f1_joined": 100 * entity_scores(gold_tags, joined_tags).f1,
        "gold": entity_scores(gold_tags, split_tags).gold_entities,
        "differ": differ,
    }


def main() -> None:
    from mner.channels.sources import ChannelSources
    from mner.labels import read_gold
    from mner.runtime.runners import load_runner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=FOLDER (or a packaged name)")
    parser.add_argument("--context", action="store_true", help="with the Twitter-2017 LLM knowledge")
    parser.add_argument("--threads", type=int, default=1)
    report_option(parser, "markers.md")
    args = parser.parse_args()
    args.report = report_path(args, "markers.md")
    posts = read_gold(T17 / "test.txt")  # MISC read as OTHER, as mner evaluate does
    if args.context:
        posts = ChannelSources.open({"context": T17 / "llm_knowledge.tsv"}).fill(posts, ["context"]).posts
    lines = [
        f"## Twitter-2017 test, `@`/`#` written apart (the file) and joined (`@name`){' with the LLM context' if args.context else ''}",
        "",
        (
            "| model | join_markers | entities after a lone @/# | found, file's spelling | found, joined | ratio | "
            "F1 file's spelling | F1 joined | posts differing |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for item in args.model:
        name, _, folder = item.partition("=")
        runner = load_runner(folder or name, "auto", args.threads)
        runner.use_features(args.threads, cached=True)  # a frozen encoder's features: computed once a post
        runners = [runner, *getattr(runner, "paths", {}).values()]
        for join_on in (True, False):
            for r in runners:
                r.config = dataclasses.replace(r.config, join_markers=join_on)
            row = check(runner, posts)
            ratio = row["found_split"] / row["found_joined"] if row["found_joined"] else float("nan")
            lines.append(
                f"| {name} | {'on' if join_on else 'off'} | {row['after_marker']} | {row['found_split']} | "
                f"{row['found_joined']} | {100 * ratio:.0f} % | {row['f1_split']:.2f} | {row['f1_joined']:.2f} | "
                f"{row['differ']} |"
            )
            print(lines[-1], flush=True)
    command = "python benchmarks/bench_markers.py " + " ".join(f"--model {m}" for m in args.model)
    lines += [
        "",
        f"Gold entities: {row['gold']}. Command: `{command}{' --context' if args.context else ''}`",
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
