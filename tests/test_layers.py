"""The packages depend only downward (docs/design.md, "Layers"): a module imports nothing from a
package on a higher layer, nor from a sibling on its own layer. Every import counts, lazy ones
inside functions too.

``KNOWN`` lists the upward and sideways imports the reshape has not removed yet, as
(importing package, imported package): the test fails on any pair not listed, and on a listed
pair that no longer occurs, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "eegfm"

LAYERS = {
    "core": 0,
    "contract": 1,
    "pipelines": 2,
    "model": 2,
    "simulate": 2,
    "metrics": 3,
    "training": 4,
    "inference": 5,
    "evaluation": 6,
    "serving": 6,
}

# Training reads data only through the contract, though the pipeline is on a lower layer.
FORBIDDEN = {("training", "pipelines")}

# What the reshape has yet to remove: shrink this, never grow it.
KNOWN: set[tuple[str, str]] = set()
# Inference and serving together may use at most this many training modules: the loader
# (quantization calibrates on a data folder).
SERVING_TRAINING_MODULES = 1


def imported_packages(path: Path) -> set[str]:
    """The eegfm packages one module imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found.update(name.split(".")[1] for name in names if name.startswith("eegfm.") and name.count(".") >= 1)
    return found


def crossings() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> the modules that make the crossing, for every import that goes up a
    layer or sideways to a sibling package."""
    out: dict[tuple[str, str], list[str]] = {}
    for package, layer in LAYERS.items():
        for path in sorted((SRC / package).rglob("*.py")):
            for target in imported_packages(path):
                downward = target in LAYERS and LAYERS[target] < layer
                if target == package or target not in LAYERS or (downward and (package, target) not in FORBIDDEN):
                    continue
                out.setdefault((package, target), []).append(str(path.relative_to(REPO)))
    return out


def test_inference_and_serving_use_few_training_modules():
    used = set()
    for path in [*(SRC / "inference").rglob("*.py"), *(SRC / "serving").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("eegfm.training"):
                used.add(node.module)
    assert len(used) <= SERVING_TRAINING_MODULES, sorted(used)


def test_packages_import_only_downward():
    found = crossings()
    new = {pair: modules for pair, modules in found.items() if pair not in KNOWN}
    assert not new, "imports that go up a layer or sideways (docs/design.md, Layers): " + "; ".join(
        f"{a} -> {b}: {', '.join(mods)}" for (a, b), mods in sorted(new.items())
    )
    gone = KNOWN - set(found)
    assert not gone, f"remove from KNOWN, these no longer occur: {sorted(gone)}"
