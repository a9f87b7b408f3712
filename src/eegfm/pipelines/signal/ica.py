"""Optional ICA removal of eye (EOG) and muscle (EMG) artifacts (`--ica`).

Extended Infomax solved by Picard (MNE's Infomax took ~300 s for one minute of EEG, Picard ~4 s),
fitted once per recording on a 1 Hz high-passed copy of its first minutes; the cleaning is then a
fixed affine map read off MNE's `ICA.apply`, so chunks stay seamless. Eye components correlate with
Fp1/Fp2 (clinical recordings rarely have EOG electrodes), muscle ones by `find_bads_muscle`. Only
measured channels are cleaned; `pipelines.job.process` propagates it to interpolated ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from eegfm.contract.channels import CANONICAL_CHANNELS


@dataclasses.dataclass(frozen=True)
class IcaCleaner:
    """The fixed affine cleaning y = M x + c of the measured canonical channels of one recording."""

    matrix: np.ndarray  # (n_measured, n_measured)
    offset: np.ndarray  # (n_measured, 1) microvolts; ~0 since ICA was fitted on high-passed data
    measured: tuple[int, ...]  # rows of the canonical array it applies to
    excluded_eog: tuple[int, ...]
    excluded_emg: tuple[int, ...]
    n_components: int = 0  # independent components fitted

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Clean a canonical (19, n_times) chunk; returns a new float32 array."""
        out = np.array(data, dtype=np.float32, copy=True)
        rows = list(self.measured)
        out[rows] = (self.matrix @ out[rows].astype(np.float64) + self.offset).astype(np.float32)
        return out


def fit_ica_cleaner(
    data: np.ndarray,
    sfreq: float,
    channel_mask: np.ndarray,
    *,
    n_components: int = 15,
    eog_threshold: float = 0.6,
    muscle_threshold: float = 0.9,
    seed: int = 0,
) -> IcaCleaner:
    """Fit ICA on canonical (19, n_times) microvolt data and build the cleaning map."""
    import mne  # heavy: loaded only with --ica

    measured = tuple(int(i) for i in np.flatnonzero(np.asarray(channel_mask) == 1))
    names = [CANONICAL_CHANNELS[i] for i in measured]
    n_comp = int(min(n_components, len(measured) - 1))
    if n_comp < 2:
        raise ValueError(f"ICA: expected at least 3 measured channels; got {len(measured)}")
    info = mne.create_info(names, sfreq, ch_types="eeg")
    raw = mne.io.RawArray(np.asarray(data)[list(measured)].astype(np.float64) * 1e-6, info, verbose="error")
    fit_raw = raw.copy().filter(1.0, None, verbose="error")
    ica = mne.preprocessing.ICA(
        n_components=n_comp,
        method="picard",
        fit_params={"extended": True, "ortho": False},
        random_state=seed,
        max_iter=500,
        verbose="error",
    )
    ica.fit(fit_raw, decim=max(1, int(sfreq // 128)), verbose="error")
    frontal = [n for n in ("Fp1", "Fp2") if n in names]
    eog: list[int] = []
    if frontal:
        eog, _ = ica.find_bads_eog(
            fit_raw, ch_name=frontal, threshold=eog_threshold, measure="correlation", verbose="error"
        )
    emg: list[int] = []
    if sfreq >= 140:  # the muscle criterion fits the 7-45 Hz slope; needs headroom above 45 Hz
        emg, _ = ica.find_bads_muscle(fit_raw, threshold=muscle_threshold, verbose="error")
    excluded = sorted(set(eog) | set(emg))
    n = len(measured)

    def cleaned(probe_volts: np.ndarray) -> np.ndarray:
        probe = mne.io.RawArray(probe_volts, info, verbose="error")
        return ica.apply(probe, exclude=excluded, verbose="error").get_data()

    # MNE's apply() is affine in the data: probing with zeros gives c, with the identity M + c.
    zero = cleaned(np.zeros((n, 1)))
    unit = 1e-6  # probe at microvolt scale, like the data, so the whitening sees sane values
    matrix = (cleaned(np.eye(n) * unit) - zero) / unit
    return IcaCleaner(
        matrix=matrix,
        offset=zero * 1e6,
        measured=measured,
        excluded_eog=tuple(sorted(eog)),
        excluded_emg=tuple(sorted(set(emg) - set(eog))),
        n_components=n_comp,
    )
