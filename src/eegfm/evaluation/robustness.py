"""Robustness: how a fine-tuned model's held-out metric degrades when the EEG gets worse in the
ways clinical recordings do.

    python -m eegfm.evaluation.robustness --run runs/ft --data OUT/tfrecords

A run's held-out windows (its test split, else validation) are scored clean and under each
perturbation at increasing severity: ``noise`` (white noise at an SNR in dB: a poor amplifier, high
impedance), ``gain`` (channels scaled: another calibration or unit), ``electrodes`` (measured
channels zeroed and marked missing, as the pipeline marks lost electrodes) and ``mains`` (a mains
sinusoid relative to the channel's RMS, which the pipeline's notch would have removed). Draws are
seeded by (seed, perturbation, severity, batch). ``OUTPUT/robustness.json`` holds every condition's
eval.json metrics and ratio to the clean metric; ``OUTPUT/robustness.png`` draws them (and ECE for
classifiers) against severity beside the clean model and the class prior.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

# Only what the parser needs: --help, a usage error and shell completion import no torch
# (tests/test_commands.py); the scoring (robustness_run) is imported by run().
from eegfm.core.allocator import keep_freed_memory
from eegfm.core.config import user_file_path, user_path
from eegfm.core.logs import setup_logging
from eegfm.core.threads import fair_threads

REPORT_NAME, PLOT_NAME = "robustness.json", "robustness.png"
SPLIT_CHOICES = ("auto", "test", "val")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-robustness",
        description="Score a fine-tuned model's held-out windows clean and under perturbations clinical EEG "
        "suffers (white noise by SNR, amplifier gain, lost electrodes, mains interference) at increasing "
        f"severity; writes {REPORT_NAME} and {PLOT_NAME}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--run",
        required=True,
        type=user_file_path,
        help="a training.finetune run folder (run.json, model/): its model, task, split and class prior",
    )
    parser.add_argument(
        "--data",
        required=True,
        nargs="+",
        action="extend",
        type=user_path,
        metavar="DIR",
        help="the pipeline output(s) the run was fine-tuned on (its run.json names them)",
    )
    parser.add_argument(
        "--output", type=user_file_path, help="folder for the report and the picture (default: RUN/robustness)"
    )
    parser.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        default="auto",
        help="the run's held-out split to score; auto: test where the run had one, else "
        "validation (whose subjects chose the checkpoint: the clean number flatters, the "
        "degradation does not)",
    )
    parser.add_argument(
        "--uncalibrated",
        action="store_true",
        help="score the logits as trained, without the model's fitted temperature (which the "
        "clean numbers of eval.json use); where that temperature hit its upper bound the "
        "calibrated model predicts about the same for every window, and perturbations cannot "
        "show",
    )
    parser.add_argument(
        "--mains_freq", type=float, choices=[50.0, 60.0], default=50.0, help="frequency of the mains perturbation, Hz"
    )
    parser.add_argument("--batch_size", type=int, default=32, help="windows per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="seeds every perturbation's random draws")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA where available")
    parser.add_argument(
        "--allow_partial",
        action="store_true",
        help="measure on the shards there are when some its manifest lists are missing or empty, with a warning "
        "naming them; without it such data is refused (exit 2)",
    )
    return parser


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """The command on ``argv``: robustness.json and robustness.png written; the report."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("INFO")
    if args.batch_size < 1:
        parser.error(f"--batch_size: expected an integer >= 1; got {args.batch_size}")
    from eegfm.evaluation.robustness_run import measure

    return measure(parser, args)


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    keep_freed_memory()  # a training step's freed tensors stay for the next: core/allocator.py
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
