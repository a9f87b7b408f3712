"""``/v1/traces``' display filters: a reviewer's low- and high-frequency filters and mains notch,
applied to the drawn samples only, never to what the model sees.

The samples are the pipeline's, already band-passed at its ``l_freq .. h_freq`` (and notched at its
mains frequency), so a display filter can only narrow that band: an LFF below ``l_freq`` or an HFF
above ``h_freq`` would promise frequencies the samples no longer hold, and is refused (422). LFF
and HFF are passband edges as the pipeline's are (``pipelines.signal.filters``: each cutoff in the
middle of MNE's transition band outside the edge), designed by the pipeline's own
``design_filters`` (``core.dsp.filter_design``'s Butterworth and notch sections) and applied with
zero phase (``apply_filters``, odd reflection at the ends of what it is given). Callers hand it a
few seconds beyond the page on each side where the windows hold them, so the page's edges do not
ring; a stretch no window holds (NaN) stays NaN, and each finite run is filtered on its own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from eegfm.contract.schema import SFREQ
from eegfm.pipelines.signal.filters import OUTPUT_NYQUIST, FilterConfig, apply_filters, design_filters
from eegfm.serving.api.uploads import UploadError

NOTCHES = {"off": None, "50": 50, "60": 60}
MARGIN_S = 5.0  # read beyond the page on each side: a 0.5 Hz high-pass settles within a few seconds
APPLIES_TO = "display only: the model's input is unchanged"


@dataclasses.dataclass(frozen=True)
class DisplayFilters:
    """The reviewer's filters (None: none beyond the pipeline's) and the pipeline's own."""

    lff: float | None = None
    hff: float | None = None
    notch: int | None = None
    pipeline_lff: float | None = None
    pipeline_hff: float | None = None

    @property
    def active(self) -> bool:
        return (self.lff, self.hff, self.notch) != (None, None, None)

    def described(self, line_freq: int | None) -> dict[str, Any]:
        """The reply's ``filters``: ``line_freq`` is the notch the pipeline applied to this recording."""
        return {
            "lff_hz": self.lff,
            "hff_hz": self.hff,
            "notch_hz": self.notch,
            "pipeline": {"lff_hz": self.pipeline_lff, "hff_hz": self.pipeline_hff, "notch_hz": line_freq},
            "applies_to": APPLIES_TO,
        }

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` (rows, samples at 256 Hz) with the display filters, NaN stretches kept."""
        if not self.active:
            return values
        return filtered(values, self.lff, self.hff, self.notch)

    def apply_full(self, values: np.ndarray, line_freq: int | None) -> np.ndarray:
        """``values`` (rows of a channel the pipeline never filtered: ECG, EOG ...) with the band the
        EEG shows: the display's edges, else the pipeline's, and the display's notch, else the
        pipeline's (``line_freq``), so the extra channels look filtered as the EEG beside them."""
        lff = self.lff if self.lff is not None else self.pipeline_lff
        hff = self.hff if self.hff is not None else self.pipeline_hff
        return filtered(values, lff, hff, self.notch if self.notch is not None else line_freq)


def display_filters(preprocess, lff: float, hff: float, notch: str) -> DisplayFilters:
    """The filters ``lff``/``hff`` (Hz, 0: none) and ``notch`` ('off', '50', '60') ask for over the
    pipeline's (``preprocess``: its l_freq, h_freq, line_freq); UploadError 422 naming the query
    parameter and the allowed values otherwise."""
    low, high = preprocess.l_freq, preprocess.h_freq
    if notch not in NOTCHES:
        raise UploadError(422, f"query parameter notch: expected one of {', '.join(NOTCHES)}; got {notch[:16]!r}")
    for name, value in (("lff", lff), ("hff", hff)):
        if not (math.isfinite(value) and 0 <= value < OUTPUT_NYQUIST):
            raise UploadError(
                422, f"query parameter {name}: expected Hz from 0 (none) to under {OUTPUT_NYQUIST:g}; got {value:g}"
            )
    narrow = "the display can only narrow the pipeline's band"
    if lff and low is not None and lff < low:
        raise UploadError(
            422, f"query parameter lff: expected at least the pipeline's l_freq {low:g} Hz ({narrow}); got {lff:g}"
        )
    if hff and high is not None and hff > high:
        raise UploadError(
            422, f"query parameter hff: expected at most the pipeline's h_freq {high:g} Hz ({narrow}); got {hff:g}"
        )
    edge = hff or high or OUTPUT_NYQUIST
    if lff and lff >= edge:
        raise UploadError(
            422, f"query parameter lff: expected a value below the high-frequency edge {edge:g} Hz; got {lff:g}"
        )
    return DisplayFilters(
        lff=float(lff) or None,
        hff=float(hff) or None,
        notch=NOTCHES[notch],
        pipeline_lff=low,
        pipeline_hff=high,
    )


def filtered(values: np.ndarray, lff: float | None, hff: float | None, notch: int | None) -> np.ndarray:
    """``values`` (rows, samples at 256 Hz) band-passed at ``lff .. hff`` and notched at ``notch``
    with zero phase; each run of samples finite in every row is filtered on its own, NaN stays NaN."""
    if (lff, hff, notch) == (None, None, None):
        return values
    config = FilterConfig(line_freq=notch, notch_harmonics=False, l_freq=lff, h_freq=hff)
    design = design_filters(SFREQ, config, notch)
    out = np.full(values.shape, np.nan, dtype=np.float32)
    finite = np.isfinite(values).all(axis=0)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2]):
        if stop - start > 1:  # a lone sample has no frequencies to filter
            out[:, start:stop] = apply_filters(values[:, start:stop], design)
        else:
            out[:, start:stop] = values[:, start:stop]
    return out
