"""Every user command is a console script (setup.py) with a working ``--help``, and every module
with a ``main`` is one of them."""

from __future__ import annotations

import ast
import importlib
import re
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
