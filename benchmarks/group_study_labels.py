"""The label table of the simulated group study in docs/model-quality.md: a simulated corpus's people
labelled by whether their background carries continuous polymorphic delta slowing, one recording
each, in the ``folder`` suite's CSV format (no split column: the suite draws one by subject).

    eegfm-simulate --output SIM --sites 6 --subjects-per-site 10 --minutes 10 --seed 7 --format edf
    python benchmarks/group_study_labels.py SIM > groups.csv
    python -m eegfm.evaluation.comparison folder --data SIM/edf --labels groups.csv --output OUT \\
        --classes normal slowing

Each person's first session; the subject is ``<site>-<patient_id>``; the label ``slowing`` where
truth.jsonl's ``background.slowing_uv`` is above 0, else ``normal``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

NEEDS_INPUT = "a simulated corpus (eegfm-simulate --output)"  # make bench skips it


def label_rows(corpus: Path) -> list[tuple[str, str, str]]:
    """``(file, subject, label)`` per person of the simulated corpus in ``corpus``, first session."""
    rows: dict[str, tuple[str, str, str]] = {}
    with (corpus / "truth.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            subject = f"{record['site']}-{record['patient_id']}"
            if record["session"] != 1 or subject in rows or not record.get("edf_path"):
                continue
            label = "slowing" if record["background"]["slowing_uv"] > 0 else "normal"
            rows[subject] = (record["edf_path"], subject, label)
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="a simulated corpus (eegfm-simulate --output; EDF format)")
    args = parser.parse_args(argv)
    if not (args.corpus / "truth.jsonl").is_file():
        parser.error(f"corpus: expected a simulated corpus folder holding truth.jsonl; got {args.corpus}")
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerows([("file", "subject", "label"), *label_rows(args.corpus)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
