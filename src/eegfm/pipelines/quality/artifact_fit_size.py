"""How many windows the artifact autoencoder's fit needs: at least 20 to train on and 10 to
calibrate with, the share ``calibration_fraction`` of them held out to calibrate.

Apart from the autoencoder (``artifact_autoencoder``) so that a command line can state it without
loading the spectra behind the autoencoder's features (scipy).
"""

from __future__ import annotations

CALIBRATION_FRACTION = 0.2  # the autoencoder's default
MIN_TRAIN_WINDOWS = 20
MIN_CALIBRATION_WINDOWS = 10


def calibration_windows(n: int, fraction: float = CALIBRATION_FRACTION) -> int:
    """How many of ``n`` windows calibrate the scores."""
    return int(round(fraction * n))


def enough_windows(n: int, fraction: float = CALIBRATION_FRACTION) -> bool:
    """Whether ``n`` windows leave enough both to train on and to calibrate with."""
    held_out = calibration_windows(n, fraction)
    return held_out >= MIN_CALIBRATION_WINDOWS and n - held_out >= MIN_TRAIN_WINDOWS


def min_fit_windows(fraction: float = CALIBRATION_FRACTION) -> int:
    """The fewest windows a fit accepts."""
    n = MIN_TRAIN_WINDOWS + MIN_CALIBRATION_WINDOWS
    while not enough_windows(n, fraction):
        n += 1
    return n
