"""The realism report (``eegfm-realism``) on real EEG (4 eegmat files) and a tiny
simulated background corpus: its files and keys, real rest's physiology, the simulated background
inside the real range, and one-line errors."""

import json
import subprocess
import sys

import pytest

from eegfm.evaluation.realism_report import run_report
from eegfm.simulate.realism import parse_spec
from eegfm.simulate.realism_stats import GENERAL_STATS
from tests.conftest import SHARED_DATA

EEGMAT = SHARED_DATA / "eegmat"
needs_eegmat = pytest.mark.skipif(not (EEGMAT / "Subject00_1.edf").is_file(), reason="no eegmat in shared data")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("realism")
    specs = [
        parse_spec(f"eegmat_rest={EEGMAT}:closed:Subject0[0-3]_1.edf"),
        parse_spec(f"eegmat_task={EEGMAT}:unknown:Subject0[01]_2.edf"),
    ]
    sim = {"sites": 4, "subjects_per_site": 1, "minutes": 2.0, "seed": 0}
    return out, run_report(specs, out, sim_options=sim)


def test_cli_errors_are_one_line_naming_the_flag(tmp_path):
    cmd = [sys.executable, "-m", "eegfm.evaluation.realism", "--output", str(tmp_path / "r")]
    for extra, flag in (([], "--against"), (["--against", f"x={tmp_path}:open:*.edf"], "--against")):
        result = subprocess.run(cmd + extra, capture_output=True, text=True)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"eegfm-realism: error: {flag}:"), lines
    help_text = subprocess.run(cmd[:3] + ["--help"], capture_output=True, text=True).stdout
    for flag in ("--against", "--simulated", "--sites", "NAME=DIR[:STATE[:GLOB]]"):
        assert flag in help_text


@needs_eegmat
def test_report_files_keys_and_no_file_names(report):
    out, result = report
    saved = json.loads((out / "realism.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert set(saved) == {"version", "statistics", "corpora", "comparison"}
    assert list(saved["corpora"]) == ["eegmat_rest", "eegmat_task", "simulated"]
    for corpus in saved["corpora"].values():
        assert set(corpus["stats"]) == set(saved["comparison"]) == set(saved["statistics"])
        for stat in GENERAL_STATS:
            assert corpus["stats"][stat]["value"] is not None
    assert saved["corpora"]["eegmat_rest"]["files"] == 4
    assert (out / "realism.png").stat().st_size > 10_000
    for name in ("realism.json", "realism.md"):
        assert "Subject" not in (out / name).read_text()  # files are only counted
    assert "| `abs_uv_median` |" in (out / "realism.md").read_text()
    # the real range says how many files span it: 4 rest + 2 task recordings; eyes closed: the 4 rest
    assert saved["comparison"]["abs_uv_median"]["real_groups"] == 6
    assert saved["comparison"]["alpha_peak_hz_closed"]["real_groups"] == 4
    assert "(6 files) |" in (out / "realism.md").read_text()


@needs_eegmat
def test_real_rest_has_posterior_alpha_and_correlation_falls_with_distance(report):
    stats = report[1]["corpora"]["eegmat_rest"]["stats"]
    assert 8.0 <= stats["alpha_peak_hz_closed"]["value"] <= 12.0
    assert stats["alpha_share_closed"]["value"] > 0.2
    assert stats["corr_near"]["value"] > stats["corr_mid"]["value"] > stats["corr_far"]["value"]
    assert -2.5 < stats["slope_1f"]["value"] < -1.0
    assert 3.0 < stats["abs_uv_median"]["value"] < 12.0


@needs_eegmat
def test_simulated_background_lies_inside_the_real_range(report):
    result = report[1]
    sim = result["corpora"]["simulated"]["stats"]
    assert sim["alpha_share_closed"]["value"] > sim["alpha_share_open"]["value"]  # eyes opening blocks alpha
    assert sim["corr_near"]["value"] > sim["corr_mid"]["value"] > sim["corr_far"]["value"]
    assert result["comparison"]["corr_near"]["inside"], result["comparison"]["corr_near"]
    # 4 real files span too narrow a range for a tiny corpus: against what all 64 eegmat files
    # span (simulate/background.py): slope -2.07 to -1.05, median |µV| 4.07-10.1,
    # 95th percentile 12.6-32.8.
    assert -2.1 < sim["slope_1f"]["value"] < -1.05
    assert 4.0 < sim["abs_uv_median"]["value"] < 10.2
    assert 12.5 < sim["abs_uv_p95"]["value"] < 33.0


def test_the_simulator_alone_points_to_the_command_that_runs_the_report(tmp_path):
    cmd = [sys.executable, "-m", "eegfm.simulate", "--realism", "--output", str(tmp_path / "r")]
    result = subprocess.run([*cmd, "--against", f"x={EEGMAT}"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "eegfm-simulate: error: --realism: the realism report runs the pipeline, so it is a command of its own: "
        "eegfm-realism (python -m eegfm.evaluation.realism), with the same corpus options"
    ]


def test_the_command_starts_without_the_report_s_modules():
    """``eegfm-realism --help`` does not pay for scipy and the pipeline."""
    code = "import sys, eegfm.evaluation.realism; print(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m.split(".")[0] in ("scipy", "numpy") or m.startswith("eegfm.pipelines")]
    assert "eegfm.simulate.cli" in loaded
