"""Learning curves from a run's metrics.jsonl: what is read (a resumed run's re-logged steps, a
line cut short), what is drawn, and the command that draws a run in progress."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

from eegfm.training.curves import FINETUNE_PANELS, PRETRAIN_PANELS, Panel, draw, panels_for, plot_curves, read_series

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, rows: list[dict], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + tail)
    return path


def test_a_resumed_runs_relogged_steps_replace_the_earlier_ones_and_a_cut_line_is_skipped(tmp_path, caplog):
    # Steps 1-4 logged, preempted after a checkpoint at step 2; resumed, steps 3-4 logged again.
    rows = [{"step": s, "loss": 10.0 - s, "lr": 1e-3} for s in (1, 2, 3, 4)]
    rows += [
        {"step": 0, "val/loss": 9.5},
        {"step": 3, "loss": 6.5, "lr": 1e-3},
        {"step": 4, "loss": 5.5, "lr": 1e-3},
        {"step": 4, "val/loss": 5.0, "best": True, "epoch": 0.5},
    ]
    metrics = _write(tmp_path / "metrics.jsonl", rows, tail='{"step": 5, "lo')  # a kill mid-write
    with caplog.at_level(logging.WARNING, logger="eegfm.training.curves"):
        series = read_series(metrics)
    steps, loss = series["loss"]
    assert steps.tolist() == [1, 2, 3, 4] and loss.tolist() == [9.0, 8.0, 6.5, 5.5]
    assert series["val/loss"][0].tolist() == [0, 4] and series["val/loss"][1].tolist() == [9.5, 5.0]
    assert "best" not in series  # a flag, not a number to draw
    assert "line(s) 9 are not metrics lines" in caplog.text


def test_the_figure_has_a_panel_per_group_the_run_logged_with_its_series(tmp_path):
    finetune = {
        "train/loss": (np.array([1, 2, 3]), np.array([1.6, 1.2, 1.0])),
        "val/loss": (np.array([2]), np.array([1.3])),
        "val/baseline_kl": (np.array([2]), np.array([1.5])),
        "lr": (np.array([1, 2, 3]), np.array([1e-4, 2e-4, 1e-4])),
    }
    assert panels_for(finetune) is FINETUNE_PANELS and panels_for({"loss": finetune["lr"]}) is PRETRAIN_PANELS
    figure = draw(finetune, FINETUNE_PANELS, "fine-tuning: hms6")
    axes = figure.axes
    # no held-out score was logged: loss and learning rate only
    assert [a.get_title() for a in axes] == ["loss", "learning rate"]
    lines = {line.get_label(): line for line in axes[0].get_lines()}
    assert list(lines) == ["train/loss", "val/loss", "val/baseline_kl (class prior)"]
    assert lines["train/loss"].get_xydata().tolist() == [[1, 1.6], [2, 1.2], [3, 1.0]]
    assert lines["val/baseline_kl (class prior)"].get_linestyle() == ":"
    assert axes[1].get_yscale() == "log" and figure.get_suptitle() == "fine-tuning: hms6"
    assert draw(finetune, [Panel("other", ("grad_norm",))]) is None
    # nothing drawable: no file
    metrics = _write(tmp_path / "metrics.jsonl", [{"step": 1, "grad_norm": 0.5}])
    assert plot_curves(metrics, tmp_path / "curves.png") is False and not (tmp_path / "curves.png").exists()


def test_the_command_draws_a_run_folder_and_names_a_folder_without_metrics(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _write(
        run / "metrics.jsonl",
        [{"step": s, "loss": 2.0 / s, "reconstruction_loss": 1.0 / s, "lr": 1e-3} for s in range(1, 6)],
    )
    done = subprocess.run(
        [sys.executable, "-m", "eegfm.training.curves", str(run), str(tmp_path / "missing")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout.strip() == str(run / "curves.png") and (run / "curves.png").read_bytes()[:8] == PNG
    assert f"curves: {tmp_path / 'missing' / 'metrics.jsonl'}: no such file" in done.stderr
    assert "Traceback" not in done.stderr
