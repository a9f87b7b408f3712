"""Does a model find a seizure in a real person's EEG? Plant one and see:
``python -m eegfm.evaluation.planted_seizures --model RUN --data DIR``.

Real recordings (10-20 electrode names, read by MNE) give ``--recordings`` 20 s stretches, one
from each at each ``--offset_s``:
its first 10 s as recorded ("before"), its last 10 s with an electrographic seizure added to its
own background ("ictal"), drawn by the simulator's ACNS seizure model
(:func:`~simulate.patterns.draw_episode`: an evolving rhythm starting at a focus and
spreading), at ``--strength``. ``--gain`` multiplies the whole stretch, background and seizure
alike: a child's EEG is two to five times an adult's. Both windows go through the pipeline and the
model as any upload.
The report: how many ictal windows reach the model (none may be dropped), and how well P(Seizure)
ranks ictal above before (AUROC, one pair per recording), with the mean probabilities.

The seizures are the simulator's own, so this measures whether what the model learned survives a
real background, amplifier and person; not whether it knows real seizures, which only labelled
recordings can tell. No file name, label or path reaches the output.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eegfm.core.threads import fair_threads

STRETCH_S, ICTAL_S = 20.0, 10.0


def planted_copy(
    path: str, out: Path, rng: np.random.Generator, strength: float, offset_s: float, gain: float = 1.0
) -> Path | None:
    """A FIF of ``path``'s 20 s from ``offset_s``, a seizure added to its last 10 s, every channel
    then multiplied by ``gain``; None if the recording is too short or names fewer than 10 of the
    19 electrodes. The planting and the FIF (a fresh header: nothing of the source's person) are
    the simulator's (:mod:`eegfm.simulate.planting`), as the planted-pattern training corpus's."""
    # the simulator and MNE take seconds to import: not for --help
    from eegfm.simulate.patterns import draw_episode
    from eegfm.simulate.planting import load_stretch, plant_episode, write_fif

    stretch = load_stretch(path, offset_s, STRETCH_S)
    if stretch is None:
        return None
    t = stretch.times
    ictal = t >= STRETCH_S - ICTAL_S
    # The episode starts 2 s before the window, so the window holds its evolving part.
    episode = draw_episode(rng, "Seizure", float(t[ictal][0]) - 2.0, float(t[-1]) + 60.0, strength, stretch.recorded)
    data = stretch.data_uv.copy()
    data[:, ictal] = plant_episode(data[:, ictal], stretch.rows, episode, t[ictal])
    return write_fif(out / f"planted{len(list(out.iterdir())):03d}_raw.fif", stretch, data * gain)


def evaluate(predictor, files: list[Path]) -> dict:
    """Per planted recording, P(Seizure) of its before and ictal windows, and the summary."""
    from sklearn.metrics import roc_auc_score  # scikit-learn: seconds to import, not for --help

    before, ictal, dropped = [], [], 0
    for prediction in tqdm(predictor.predict([str(f) for f in files]), total=len(files), unit="rec", disable=None):
        windows = {round(w.start_s): w.class_probabilities.get("Seizure", np.nan) for w in prediction.windows}
        if 0 in windows:
            before.append(windows[0])
        if round(STRETCH_S - ICTAL_S) in windows:
            ictal.append(windows[round(STRETCH_S - ICTAL_S)])
        else:
            dropped += 1
    labels = [0] * len(before) + [1] * len(ictal)
    return {
        "recordings": len(files),
        "ictal_windows_scored": len(ictal),
        "ictal_windows_dropped": dropped,
        "auroc": float(roc_auc_score(labels, before + ictal)) if before and ictal else float("nan"),
        "p_seizure_ictal": float(np.mean(ictal)) if ictal else float("nan"),
        "p_seizure_before": float(np.mean(before)) if before else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    parser = argparse.ArgumentParser(prog="eegfm-planted-seizures", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a fine-tuned hms6 run folder or model/ folder")
    parser.add_argument(
        "--data",
        required=True,
        nargs="+",
        action="extend",
        help="real recordings: folders or globs (resting EEG, 10-20 names; repeatable)",
    )
    parser.add_argument(
        "--recordings", type=int, default=14, help="how many stretches to plant in, at most (default: 14)"
    )
    parser.add_argument("--strength", type=float, default=0.5, help="the seizures' strength, 0-1 (default: 0.5)")
    parser.add_argument(
        "--offset_s",
        type=float,
        nargs="+",
        default=[60.0],
        help="where in each recording a stretch starts (several: a stretch at each, from one recording)",
    )
    parser.add_argument(
        "--gain",
        type=float,
        default=1.0,
        help="multiply each stretch, background and seizure alike, by this (> 0; default: 1): children's EEG "
        "is two to five times an adult's",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the seizures' foci and courses")
    parser.add_argument("--output", type=Path, help="also write planted_seizures.json into this folder")
    args = parser.parse_args(argv)
    if not 0.0 <= args.strength <= 1.0:
        parser.error(f"--strength: expected a value in [0, 1]; got {args.strength}")
    if not args.gain > 0.0:
        parser.error(f"--gain: expected a factor above 0; got {args.gain}")
    from eegfm.inference.predictor import Predictor  # torch and the model: not for --help

    predictor = Predictor(args.model)
    if "Seizure" not in predictor.labels:
        parser.error(f"--model: expected a model with a Seizure class; its classes are {', '.join(predictor.labels)}")
    sources = [
        path
        for data in args.data
        for path in (sorted(glob.glob(str(Path(data) / "*"))) if Path(data).is_dir() else sorted(glob.glob(data)))
    ]
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        planted = []
        for source in sources:
            if len(planted) >= args.recordings:
                break
            if source.lower().endswith((".edf", ".bdf", ".fif", ".set", ".vhdr")):
                made = [planted_copy(source, Path(tmp), rng, args.strength, at, args.gain) for at in args.offset_s]
                planted += [m for m in made if m]
        if not planted:
            parser.error(f"--data: no recording of at least {min(args.offset_s) + STRETCH_S:g} s with 10-20 names")
        report = evaluate(predictor, planted)
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "planted_seizures.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
