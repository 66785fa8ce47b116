"""The packaged models' predicted tags on every Twitter-2015 test post, to compare two versions of mner (issue #21:
the redesign left tagging unchanged).

Usage: python benchmarks/dump_tags.py OUT.json [--kg runs/kg.sqlite], once with each version on PYTHONPATH; two
dumps are equal when every model tags every post alike. Reads the code of before issue #21 too (``mner.runtime``
``load_tagger`` and ``ChannelSources.open(captions=, kg=, context=)``)."""

import json
import sys
from pathlib import Path

from mner.data import read_conll

T15 = Path(__file__).resolve().parents[2] / "shared" / "data" / "twitter2015"
posts = read_conll(T15 / "test.txt")
out = {}
try:
    from mner.channels.sources import ChannelSources
    from mner.runtime.runners import load_runner as load

    def sources(**f):
        return ChannelSources.open(f)

except ImportError:
    from mner.channels import ChannelSources
    from mner.runtime import load_tagger as load

    def sources(**f):
        m = {"caption": "captions", "knowledge": "kg", "context": "context"}
        return ChannelSources.open(**{m[k]: v for k, v in f.items()})


KG = sys.argv[sys.argv.index("--kg") + 1] if "--kg" in sys.argv else "runs/kg.sqlite"
for name, files in [
    ("default", {"context": T15 / "llm_knowledge.tsv"}),
    ("default", {}),
    ("text", {}),
    ("paper-full", {"caption": T15 / "image_captions.tsv", "knowledge": KG}),
]:
    for runtime in ("onnx", "torch"):
        try:
            runner = load(name, runtime)
        except Exception as err:  # noqa: BLE001 - report and go on with the other models
            print(name, runtime, "cannot load:", err)
            continue
        filled = sources(**files).fill(posts, runner.config.channels)
        tags = runner.predict_tags(filled.posts, images=filled.images)
        key = f"{name}|{'+'.join(files)}|{runtime}"
        out[key] = tags
        from mner.evaluate import entity_scores

        print(key, round(100 * entity_scores([list(p.tags) for p in posts], tags).f1, 2), flush=True)
Path(sys.argv[1]).write_text(json.dumps(out))
