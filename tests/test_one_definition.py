"""One definition of each shared thing (issue 79): each constant or table below has one home, and
this test fails when another product module defines it again.

- the data contract's sampling rate: ``contract.schema.SFREQ``;
- each default window length: the pipeline's ``contract.schema.WINDOW_SECONDS``, the model
  comparisons' ``evaluation.comparison.options.BENCHMARK_WINDOW_SECONDS``;
- the EEG band table and band power: ``core.dsp.bands.BANDS`` and ``band_power``;
- the quality window rules: ``pipelines.quality.rules.WINDOW_RULES`` (rows of ``Rule``);
- the HTTP routes: the app (``serving/api/app.py``, ``page.py`` and ``marks_routes.py`` add them; ``routes.py``
  reads them);
- the training presets' shared values: ``training/configs/base.yaml``, which the others inherit;
- the data loader's defaults: ``training.data.config.LoaderConfig`` (a run's ``loader:`` section reads them).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import yaml

SRC = Path(__file__).resolve().parents[1] / "src" / "eegfm"

SFREQ_HOME = "contract/schema.py"
BANDS_HOME = "core/dsp/bands.py"
RULES_HOME = "pipelines/quality/rules.py"
WINDOW_HOMES = {"contract/schema.py": "WINDOW_SECONDS", "evaluation/comparison/options.py": "BENCHMARK_WINDOW_SECONDS"}
ROUTE_HOMES = ("serving/api/app.py", "serving/api/page.py", "serving/api/marks_routes.py")
# A simulated recorder's own default rate (one of simulate.sites.ALLOWED_SFREQS), not the contract's.
SFREQ_DEFAULT_ELSEWHERE = {"simulate/sites.py"}
CLINICAL_EDGES = {(4.0, 8.0), (8.0, 13.0), (13.0, 30.0)}


def _modules() -> Iterator[tuple[str, ast.AST]]:
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _number(node: ast.AST | None) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _defaults(tree: ast.AST) -> Iterator[tuple[str, ast.AST | None]]:
    """(name, default) of every function argument and annotated (dataclass) field."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults) :], args.defaults):
                yield arg.arg, default
            for arg, default in zip(args.kwonlyargs, args.kw_defaults):
                yield arg.arg, default
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.target.id, node.value


def _assigned_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _is_rate(name: str) -> bool:
    return "sfreq" in name.lower() or "rate" in name.lower()


def test_the_sampling_rate_has_one_home():
    """No other module names a rate 256 Hz (a constant, a default), nor writes 256.0: a 256 that
    counts something else (a batch, a width) is an integer and another name."""
    found = []
    for module, tree in _modules():
        if module == SFREQ_HOME:
            continue
        for node in ast.walk(tree):
            names = [n for n in _assigned_names(node) if _is_rate(n)]
            if names and _number(getattr(node, "value", None)) == 256.0 and module not in SFREQ_DEFAULT_ELSEWHERE:
                found.append(f"{module}:{node.lineno} {names} = 256")
            if isinstance(node, ast.Constant) and isinstance(node.value, float) and node.value in (256.0, 128.0):
                found.append(f"{module}:{node.lineno} a literal {node.value} (the rate, or its Nyquist)")
        if module not in SFREQ_DEFAULT_ELSEWHERE:
            defaults = [name for name, d in _defaults(tree) if _is_rate(name) and _number(d) == 256.0]
            found += [f"{module}: {name} defaults to 256" for name in defaults]
    assert not found, "the sampling rate is contract.schema.SFREQ; import it: " + "; ".join(found)


def _pairs(node: ast.AST) -> set[tuple[float, float]]:
    pairs = set()
    for inner in ast.walk(node):
        if isinstance(inner, (ast.Tuple, ast.List)) and len(inner.elts) in (2, 3):  # (low, high), (name, low, high)
            low, high = (_number(e) for e in inner.elts[-2:])
            if low is not None and high is not None:
                pairs.add((low, high))
    return pairs


def test_each_default_window_length_has_one_home():
    """A window length's default (``window_seconds``, ``*WINDOW_SECONDS``) is a number
    only in its home; everywhere else it names the constant."""
    found = []
    for module, tree in _modules():
        for node in ast.walk(tree):
            names = [n for n in _assigned_names(node) if n.endswith("WINDOW_SECONDS")]
            if names and (module, names[0]) not in WINDOW_HOMES.items() and _number(node.value) is not None:
                found.append(f"{module}:{node.lineno} {names[0]}")
        for name, default in _defaults(tree):
            if name == "window_seconds" and _number(default) is not None:
                found.append(f"{module}: {name} = {_number(default)}")
    assert found == [], found


def test_the_band_table_and_band_power_have_one_home():
    found = []
    for module, tree in _modules():
        if module == BANDS_HOME:
            continue
        for node in ast.walk(tree):
            if _assigned_names(node) and len(_pairs(node) & CLINICAL_EDGES) >= 2:
                found.append(f"{module}:{node.lineno} a band table")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "band_power":
                found.append(f"{module}:{node.lineno} def band_power")
            keys = getattr(node, "keys", None) if isinstance(node, ast.Dict) else None
            if keys and {"alpha", "theta"} <= {k.value for k in keys if isinstance(k, ast.Constant)}:
                found.append(f"{module}:{node.lineno} a named band table")
    assert not found, "the bands are core.dsp.bands.BANDS (bands_within for a view): " + "; ".join(found)


def test_the_window_rules_have_one_table():
    """A rule's threshold field is named in the rule table only (as a string or an attribute): a
    module that maps rules to thresholds again (as the repair's table and the local extents once
    did) fails."""
    from eegfm.pipelines.quality.rules import WINDOW_RULES

    thresholds = {rule.threshold for rule in WINDOW_RULES}
    found = []
    for module, tree in _modules():
        if module == RULES_HOME:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in thresholds:
                found.append(f"{module}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.Attribute) and node.attr in thresholds:
                found.append(f"{module}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Rule":
                found.append(f"{module}:{node.lineno} Rule(...)")
    assert not found, f"window rules are rows of {RULES_HOME}'s WINDOW_RULES: " + "; ".join(found)


def test_each_route_path_is_written_once():
    """A route's path is a string where the app adds it; anything else reads the app."""
    found = []
    for module, tree in _modules():
        if not module.startswith("serving/") or module in ROUTE_HOMES:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.startswith(("/v1/", "/health", "/ready", "/metrics", "/openapi.json", "/docs")):
                    found.append(f"{module}:{node.lineno} {node.value!r}")
    assert not found, "route paths belong where the app adds them: " + "; ".join(found)


def test_presets_inherit_the_shared_values():
    configs = SRC / "training" / "configs"
    for path in sorted(configs.glob("*.yaml")):
        if path.stem != "base":
            assert "base" in yaml.safe_load(path.read_text()), f"{path.name}: expected base: (list only what differs)"


def test_the_loader_section_takes_the_loaders_defaults():
    """A run's ``loader:`` section and the loader it makes share one set of defaults (LoaderConfig's)."""
    import dataclasses

    from eegfm.training.config_sections import LoaderSection
    from eegfm.training.data import LoaderConfig

    section, loader = LoaderSection(), LoaderConfig()
    shared = {f.name for f in dataclasses.fields(LoaderSection)} & {f.name for f in dataclasses.fields(LoaderConfig)}
    assert shared >= {"batch_size", "num_workers", "shuffle_buffer", "eeg_dtype", "drop_last", "seed"}
    for name in shared - {"augment"}:  # the section holds augment's fields as a mapping
        assert getattr(section, name) == getattr(loader, name), name
