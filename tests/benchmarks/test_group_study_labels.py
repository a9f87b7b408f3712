"""benchmarks/group_study_labels.py: a simulated corpus's people labelled by background slowing,
one recording each, in the folder suite's CSV format."""

from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stdout

import pytest

from benchmarks.group_study_labels import main
from eegfm.simulate.cli import main as simulate


def test_one_row_per_person_labelled_by_the_simulators_slowing(tmp_path):
    argv = ["--output", str(tmp_path), "--sites", "2", "--subjects-per-site", "3", "--recordings-per-subject", "2"]
    assert simulate([*argv, "--minutes", "1", "--seed", "3", "--format", "edf"]) == 0
    out = io.StringIO()
    with redirect_stdout(out):
        assert main([str(tmp_path)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    people = {(r["site"], r["patient_id"]) for r in truth}
    assert len(rows) == len(people) == 6 and len({r["subject"] for r in rows}) == 6
    by_file = {r["edf_path"]: r for r in truth}
    for row in rows:
        record = by_file[row["file"]]
        assert (tmp_path / "edf" / row["file"]).is_file() and record["session"] == 1
        assert row["subject"] == f"{record['site']}-{record['patient_id']}"
        assert row["label"] == ("slowing" if record["background"]["slowing_uv"] > 0 else "normal")


def test_a_folder_without_truth_is_refused_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert f"expected a simulated corpus folder holding truth.jsonl; got {tmp_path}" in capsys.readouterr().err
