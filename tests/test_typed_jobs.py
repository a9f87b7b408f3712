"""No product module drives another eegfm command through its command line: the benchmark, the
leave-one-site-out evaluation and the rest call each command's typed job (``preprocess``,
``pretrain``, ``finetune``, ``stack``, ``simulate``) with configs, never argv lists or ``--set``
strings, nor a subprocess running eegfm. A command's own parser (``add_argument``) is its own.

What counts as driving a command (``command_line_uses``):

- a ``"--set"`` string anywhere but in an ``add_argument`` call;
- a call of ``main``, ``run``, ``parse_args`` or ``parse_known_args`` with an option string
  (``"--name"``) among its arguments;
- another eegfm module's ``main``, called or handed on (``x.main``, or ``main`` imported from an
  eegfm module), outside a ``__main__.py``;
- a list or tuple holding an eegfm console script's name, or ``"-m"`` beside an ``"eegfm..."`` module.

Scripts (``scripts/``, ``benchmarks/``) and tests drive the commands as a user does, so they are
not scanned.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CALLED_WITH_ARGV = {"main", "run", "parse_args", "parse_known_args"}
OPTION = re.compile(r"--[A-Za-z][\w-]*(=.*)?")


def console_scripts(setup_py: Path = REPO / "setup.py") -> set[str]:
    return set(re.findall(r'"(eegfm-[\w-]+) = ', setup_py.read_text(encoding="utf-8")))


def _strings(node: ast.AST) -> Iterator[str]:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            yield inner.value
        elif isinstance(inner, ast.JoinedStr):  # an f-string's literal start: f"--set ..."
            first = inner.values[0] if inner.values else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield first.value


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _eegfm_imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """The names bound to eegfm modules (``import eegfm.x as m``, ``from eegfm import x``) and
    the ``main`` functions imported from them (``from eegfm.x import main``)."""
    modules, mains = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.asname or alias.name for alias in node.names if alias.name.startswith("eegfm")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("eegfm"):
            for alias in node.names:
                (mains if alias.name == "main" else modules).add(alias.asname or alias.name)
    return modules, mains


def command_line_uses(source: str, name: str, scripts: set[str]) -> list[str]:
    """``line: what`` for each place ``source`` (the module file ``name``) drives a command by its command line."""
    tree = ast.parse(source)
    found: list[str] = []
    parser_calls = {id(n) for n in ast.walk(tree) if isinstance(n, ast.Call) and _callee(n) == "add_argument"}
    own = {id(c) for n in ast.walk(tree) if id(n) in parser_calls for c in ast.walk(n)}
    modules, mains = _eegfm_imports(tree)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and node.value == "--set" and id(node) not in own:
            found.append(f"{line}: a '--set' string")
        elif isinstance(node, ast.Call) and _callee(node) in CALLED_WITH_ARGV:
            given = [text for arg in [*node.args, *node.keywords] for text in _strings(arg) if OPTION.fullmatch(text)]
            if given:
                found.append(f"{line}: {_callee(node)}() given options {given[:3]}")
        elif not name.endswith("__main__.py") and (
            (isinstance(node, ast.Attribute) and node.attr == "main" and getattr(node.value, "id", None) in modules)
            or (isinstance(node, ast.Name) and node.id in mains)
        ):
            found.append(f"{line}: another eegfm command's main")
        elif isinstance(node, (ast.List, ast.Tuple)):
            texts = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if set(texts) & scripts or ("-m" in texts and any(t.startswith("eegfm.") for t in texts)):
                found.append(f"{line}: a command line of an eegfm command {texts[:4]}")
    return found


def product_uses(src: Path, scripts: set[str]) -> dict[str, list[str]]:
    """``{module path: uses}`` over every module under ``src/eegfm`` that has any."""
    found = {}
    for path in sorted((src / "eegfm").rglob("*.py")):
        if uses := command_line_uses(path.read_text(encoding="utf-8"), path.name, scripts):
            found[str(path.relative_to(src))] = uses
    return found


def test_no_product_module_drives_another_command_by_its_command_line():
    assert product_uses(REPO / "src", console_scripts()) == {}


def test_the_check_sees_each_way_of_building_a_command_line():
    scripts = {"eegfm-preprocess"}
    caught = {
        "argv list": 'from eegfm.pipelines.job import preprocess as p\np.run(["--input", x, "--output", y])',
        "concatenated argv": 'from eegfm.simulate import cli\ncli.run(["--output", o] + ["--seed", str(s)])',
        "--set": 'argv = ["--data", d]\nargv += ["--set", "seed=1"]',
        "main handed on": "from eegfm.training import pretrain\n_run(pretrain.main, argv)",
        "main imported": "from eegfm.training.finetune import main\nmain(argv)",
        "parse_args": 'from eegfm.serving import predict\npredict.build_parser().parse_args(["--model", m])',
        "console script": 'subprocess.run(["eegfm-preprocess", "--input", x])',
        "python -m": 'subprocess.run([sys.executable, "-m", "eegfm.training.pretrain"])',
    }
    for what, source in caught.items():
        assert command_line_uses(source, "m.py", scripts), what
    allowed = [
        'parser.add_argument("--set", action="append")',  # a command's own parser
        'parser.add_argument("--sites", help="see --set")',
        "from eegfm.simulate.cli import main\nsys.exit(main())",  # in a __main__.py
        'named & {"--direct_running_mode", "--direct_num_workers"}',  # Beam's own option names
        'raise UsageError(f"--output {path}: cannot create it")',
    ]
    for source in allowed:
        assert command_line_uses(source, "__main__.py", scripts) == [], source
