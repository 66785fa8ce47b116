"""The package's shape: ``import mner`` stays light, every module imports only modules of its own layer or
below (the CLI and the service on top; data, the CRF and the fusion at the bottom), and no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mner"

# Bottom first. A module belongs to the first layer with a pattern that names it ("x.*": x and below it).
LAYERS = [
    (
        "foundation",
        [
            "mner.version",
            "mner.registry",
            "mner.paths",
            "mner.tokenizer",
            "mner.data",
            # the word vectors and the "@"/"#" joining: a label set reads kinds by their word vectors, and a
            # context is read on the tokens as a model reads them (mner.channels.reading)
            "mner.inputs.embeddings",
            "mner.inputs.markers",
            "mner.labels",
            # ONNX Runtime sessions and thread counts: every layer that runs a graph (a frozen text encoder's
            # features are inputs; the models and the image encoder run above)
            "mner.runtime.ort",
            "mner.decoding",
            "mner.evaluate",
        ],
    ),
    ("stages", ["mner.vision.*", "mner.knowledge.*", "mner.channels.*"]),
    ("the model config", ["mner.config"]),  # names channels (mner.channels.spec) and encoders
    ("inputs", ["mner.inputs.*"]),
    ("the model", ["mner.model.*"]),
    ("runtimes", ["mner.runtime.*"]),
    ("training and tagging", ["mner.training.*", "mner.serving.*"]),
    ("edges", ["mner.cli.*", "mner", "mner.__main__"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The mner modules a file imports anywhere in it (inside functions too)."""

    def owner(name: str) -> str:
        while name not in known:
            name = name.rsplit(".", 1)[0]
        return name

    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mner":
            for alias in node.names:  # "from mner.vision import decode" imports the module mner.vision.decode
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else owner(node.module))
        elif isinstance(node, ast.Import):
            out |= {owner(a.name) for a in node.names if a.name.split(".")[0] == "mner"}
    return out


def layer_of(module: str) -> int:
    for number, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if module == pattern or (
                pattern.endswith(".*") and (module == pattern[:-2] or module.startswith(pattern[:-1]))
            ):
                return number
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def test_no_module_imports_a_module_above_it():
    known = modules()
    upward = []
    for name, path in known.items():
        for target in imports(path, known) - {name}:
            if layer_of(target) > layer_of(name):
                upward.append(
                    f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                )
    assert not upward, "\n".join(sorted(upward))


def test_there_is_no_import_cycle():
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" → ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)


def test_the_walk_sees_lazy_imports():
    # a function-level import counts: the training module imports the tagger (at the top) and the
    # embeddings (inside make_model_config)
    known = modules()
    assert {"mner.model.torch_model", "mner.inputs.embeddings"} <= imports(
        known["mner.training.trainer"], known
    )


def test_importing_mner_loads_no_torch():
    code = "import sys, mner; print(sorted(m for m in ('torch', 'transformers', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
