"""The names of the optional per-window features (``features``), in their fixed order: per channel
:data:`CHANNEL_FEATURES`, named ``"<channel>.<feature>"``, channel-major.

Apart from the features themselves so that a command line and the manifest can name and count them
without loading the spectra (scipy).
"""

from __future__ import annotations

from collections.abc import Sequence

from eegfm.contract.channels import CANONICAL_CHANNELS
from eegfm.core.dsp.bands import BANDS

TIME_FEATURES: tuple[str, ...] = tuple(
    "mean std skewness kurtosis line_length hjorth_mobility hjorth_complexity".split()
)
CHANNEL_FEATURES: tuple[str, ...] = TIME_FEATURES + tuple(f"rel_{name}" for name, _, _ in BANDS) + ("spectral_entropy",)


def feature_names(ch_names: Sequence[str] = CANONICAL_CHANNELS) -> tuple[str, ...]:
    """``"<channel>.<feature>"`` for every channel and feature, channel-major."""
    return tuple(f"{ch}.{feat}" for ch in ch_names for feat in CHANNEL_FEATURES)


FEATURE_NAMES: tuple[str, ...] = feature_names()
