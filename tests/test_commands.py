"""Every user command is a console script (setup.py) with a working ``--help``, and every module
with a ``main`` is one of them."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def console_scripts() -> dict[str, str]:
    """name -> 'module:function', as setup.py declares them."""
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    return dict(re.findall(r'"(eegfm-[\w-]+) = ([\w.]+:\w+)"', text))


def modules_with_main() -> set[str]:
    found = set()
    for path in (SRC / "eegfm").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            found.add(".".join(path.relative_to(SRC).with_suffix("").parts))
    return found


def _entry(target: str):
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def test_every_module_with_a_main_is_a_console_script():
    declared = {_entry(target) for target in console_scripts().values()}
    assert sorted(m for m in modules_with_main() if importlib.import_module(m).main not in declared) == []


def test_the_readme_lists_every_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert [name for name in console_scripts() if f"`{name}`" not in readme] == []


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_every_command_has_help(name, capsys):
    main = _entry(console_scripts()[name])
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


# The heavy libraries each command's --help imports today (a fresh process each): the set may
# shrink, never grow. Libraries a command needs only to run belong inside the code that runs it,
# so --help, shell completion and a bad argument answer in a fraction of a second.
HEAVY = ("torch", "tensorflow", "apache_beam", "onnxruntime", "sklearn", "mne", "matplotlib")
HELP_IMPORTS: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        [
            "eegfm-corpus-check",
            "eegfm-curves",
            "eegfm-data-report",
            "eegfm-models",
            "eegfm-planted",
            "eegfm-planted-seizures",
            "eegfm-predict",
            "eegfm-quantize",
            "eegfm-realism",
            "eegfm-selective",
            "eegfm-simulate",
        ],
        frozenset(),
    ),
    **dict.fromkeys(["eegfm-preprocess", "eegfm-quality-survey", "eegfm-redact", "eegfm-serve"], frozenset()),
    **dict.fromkeys(
        [
            "eegfm-benchmark",
            "eegfm-ensemble",
            "eegfm-finetune",
            "eegfm-loso",
            "eegfm-pretrain",
            "eegfm-report",
            "eegfm-robustness",
        ],
        frozenset(),
    ),
}

# Runs each target's --help in turn in one process and prints, after each, the heavy libraries
# imported so far: the commands of one group share a process (each allowed the group's set).
_HELP_PROBE = r"""
import contextlib, importlib, io, json, sys
heavy = set(sys.argv[1].split(","))
for target in sys.argv[2:]:
    module, function = target.split(":")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            getattr(importlib.import_module(module), function)(["--help"])
    except SystemExit as stop:
        assert stop.code in (0, None), (target, stop.code)
    assert "usage:" in out.getvalue(), target
    print(json.dumps([target, sorted(heavy & {name.split(".")[0] for name in sys.modules})]))
"""


def test_every_command_has_its_recorded_help_imports():
    assert sorted(HELP_IMPORTS) == sorted(console_scripts())


def test_help_imports_no_heavy_library_it_did_not_before():
    """Every command's --help, in fresh processes (one per group of commands with the same allowed
    set, run side by side), imports no heavy library outside its recorded set."""
    scripts = console_scripts()
    groups: dict[frozenset[str], list[str]] = {}
    for name, allowed in HELP_IMPORTS.items():
        groups.setdefault(allowed, []).append(name)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    probes = {
        allowed: subprocess.Popen(
            [sys.executable, "-c", _HELP_PROBE, ",".join(HEAVY), *(scripts[name] for name in names)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for allowed, names in groups.items()
    }
    grown = {}  # target -> the libraries its --help was the first of its group to import
    reported = []
    for allowed, probe in probes.items():
        out, err = probe.communicate(timeout=300)
        assert probe.returncode == 0, err[-2000:]
        seen = set(allowed)
        for line in out.splitlines():
            target, imported = json.loads(line)
            reported.append(target)
            if set(imported) - seen:
                grown[target] = sorted(set(imported) - seen)
                seen |= set(imported)
    assert sorted(reported) == sorted(scripts.values()) and grown == {}


def _first_call(function: ast.FunctionDef) -> str:
    """The name of the function a ``main``'s first statement (after its docstring) calls."""
    body = function.body[1:] if ast.get_docstring(function) else function.body
    first = body[0]
    call = first.value if isinstance(first, ast.Expr) else None
    if not isinstance(call, ast.Call):
        return ""
    return _callee(call)


def _callee(call: ast.Call) -> str:
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")


def _called(function: ast.FunctionDef) -> set[str]:
    """The names of the functions ``function`` calls anywhere in its body."""
    return {_callee(node) for node in ast.walk(function) if isinstance(node, ast.Call)}


def _mains() -> dict[str, ast.FunctionDef]:
    """Each console script's ``main`` as parsed from the module that defines it."""
    mains = {}
    for name, target in console_scripts().items():
        main = getattr(importlib.import_module(target.split(":")[0]), target.split(":")[1])
        tree = ast.parse(Path(sys.modules[main.__module__].__file__).read_text(encoding="utf-8"))
        mains[name] = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main")
    return mains


def test_every_command_starts_with_fair_threads():
    """core/threads.py: each console script sizes its pools from one count before any work."""
    assert [name for name, function in _mains().items() if _first_call(function) != "fair_threads"] == []


def test_the_commands_that_train_keep_freed_memory_and_serving_does_not():
    """core/allocator.py: a training step's freed tensors stay in the heap; a long-lived server
    would hold them for nothing. (The preprocessing job's workers keep theirs from their DoFns'
    setup: tests/pipelines/job/test_stages.py.)"""
    keeping = [name for name, function in _mains().items() if "keep_freed_memory" in _called(function)]
    training = [
        "eegfm-benchmark",
        "eegfm-ensemble",
        "eegfm-finetune",
        "eegfm-loso",
        "eegfm-pretrain",
        "eegfm-robustness",
    ]
    assert sorted(keeping) == training
