"""The Dataflow Flex Template's entry point: the template's parameters -> ``pipelines.job.preprocess``.

Dataflow's launcher passes every parameter as ``--name=value``. Two of them need translating for
the job's own parser: on/off parameters (``--report=true``) become plain flags (``--report``) or
are dropped (``false``), and ``input`` may list several paths separated by commas (a template
parameter is one string). Everything else, Dataflow's own options included, passes as it is.
"""

from __future__ import annotations

import sys

from eegfm.pipelines.job.preprocess import build_parser, main

TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def switches() -> set[str]:
    """The job's on/off flags (``store_true`` options)."""
    parser = build_parser()
    return {
        opt
        for action in parser._actions
        if action.nargs == 0 and action.const is True
        for opt in action.option_strings
        if opt.startswith("--")
    }


def translate(argv: list[str]) -> list[str]:
    flags, out = switches(), []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if eq and name in flags:
            if value.strip().lower() in TRUE:
                out.append(name)
            elif value.strip().lower() not in FALSE:
                raise SystemExit(f"{name}: expected true or false; got {value!r}")
        elif eq and name == "--input":
            out += [f"--input={path.strip()}" for path in value.split(",") if path.strip()]
        else:
            out.append(arg)
    return out


if __name__ == "__main__":
    sys.exit(main(translate(sys.argv[1:])))
