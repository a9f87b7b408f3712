"""A small run folder as the stages leave one, on real EEG (eegmat subjects at three sites): the
pipeline output, a fine-tuned model, its robustness, leave-one-site-out folds and an explained
window; and the report the CLI writes from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from eegfm.evaluation import loso, robustness
from eegfm.evaluation.report import cli
from eegfm.serving import predict
from tests.evaluation.conftest import QUICK


@pytest.fixture(scope="session")
def run_folder(three_sites, finetuned, encoder, shared_data, tmp_path_factory) -> Path:
    """OUT/tfrecords (three sites, 6 subjects), OUT/finetune (2 validation subjects),
    OUT/robustness, OUT/loso (a fold per site, 2 steps each) and OUT/predictions (one explained
    window of one recording): about 40 s."""
    import torch

    out = tmp_path_factory.mktemp("report") / "out"
    out.mkdir()
    (out / "tfrecords").symlink_to(three_sites, target_is_directory=True)
    (out / "finetune").symlink_to(finetuned, target_is_directory=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        robustness.main(["--run", str(finetuned), "--data", str(three_sites), "--output", str(out / "robustness")])
        data = ["--pretrained", str(encoder), "--data", str(three_sites), "--output", str(out / "loso")]
        assert loso.main([*data, *QUICK]) == 0
        ward = out.parent / "ward"
        ward.mkdir()
        (ward / "Subject00_1.edf").symlink_to(shared_data / "eegmat" / "Subject00_1.edf")
        argv = ["--model", str(finetuned), "--input", str(ward), "--output", str(out / "predictions"), "--threads", "1"]
        argv += ["--no_artifact_model", "--no_plots", "--explain", "--explain_max_windows", "1", "--explain_steps", "2"]
        assert predict.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def report(run_folder, tmp_path_factory) -> dict[str, Path]:
    """The report of ``run_folder``: {"html", "markdown", "json"} paths."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        output = tmp_path_factory.mktemp("written") / "report.html"
        return cli.run([str(run_folder), "--output", str(output), "--bootstrap", "200"])
    finally:
        torch.set_num_threads(threads)
