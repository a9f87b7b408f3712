"""An unsupervised artifact detector: a small autoencoder over log band powers.

Features: per channel, ``log10`` of the power (uV^2) in :data:`AE_BANDS` plus ``POWER_FLOOR_UV2``
(a dead channel reads -3), standardized by the fitting sample's median and IQR. Model:
``n_features -> 64 -> 16 -> 64 -> n_features``, tanh, trained by Adam on mean squared error with
weight decay, in numpy (no torch on the Beam workers), every random choice from one seeded
Generator. Calibration: the log reconstruction errors of a held-out 20 % (whole ``groups`` if given)
give a robust z-score, mapped to ``1 / (1 + exp(-(z - z_center) / z_width))``: clean windows score
about 0.05, three robust SDs out 0.5. The pipeline and the predictor score a recording's windows with
:meth:`ArtifactAutoencoder.score_recording`, which first moves the recording's median window onto
the fitting sample's: fitted on one corpus, the detector then scores another corpus's clean EEG as
clean and its artifacts as artifacts. On unseen eegmat
subjects, EMG bursts, pops, dead channels and drifts score with AUC > 0.999
(tests/pipelines/quality/test_artifact_autoencoder.py). :meth:`ArtifactAutoencoder.save` writes one ``.npz`` of plain
arrays and a JSON header (no pickle).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from eegfm.contract.schema import SFREQ
from eegfm.core.config import check_int
from eegfm.core.dsp.bands import band_weights
from eegfm.pipelines.quality.artifact_fit_size import (
    CALIBRATION_FRACTION,
    calibration_windows,
    enough_windows,
    min_fit_windows,
)
from eegfm.pipelines.signal.features import window_spectrum

FORMAT = "eegfm-artifact-ae"
FORMAT_VERSION = 1
AE_BANDS: tuple[tuple[float, float], ...] = tuple(
    itertools.pairwise((0.0, 1.0, 4.0, 8.0, 13.0, 20.0, 30.0, 45.0, 70.0))
)
POWER_FLOOR_UV2 = 1e-3
# The fewest windows whose median :meth:`ArtifactAutoencoder.score_recording` takes as the recording's
# typical window: from 3, one artifact window cannot be the median.
MIN_RECORDING_WINDOWS = 3
# The constructor's arguments and what fitting learns beside the weights, as the saved header names them.
_HYPERPARAMETERS = tuple(
    "hidden epochs batch_size learning_rate weight_decay calibration_fraction z_center z_width sfreq seed".split()
)
_FITTED = ("n_chans", "n_fit_windows", "error_center", "error_scale")


def _as_windows(windows: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    arr = np.asarray(windows)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(
            f"windows: expected shape (n_windows, n_chans, n_times) or one (n_chans, n_times); got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TypeError(f"windows: expected real numbers; got dtype {arr.dtype}")
    return arr


# Windows per PSD batch in band_features: the float64 segment buffer stays in cache (about 6 MB).
_BATCH_WINDOWS = 8


def band_features(windows: np.ndarray | Sequence[np.ndarray], sfreq: float = SFREQ) -> np.ndarray:
    """(n_windows, n_chans * len(AE_BANDS)) log10 band powers from the float64 Welch PSD,
    channel-major; NaN/inf read as 0."""
    arr = _as_windows(windows)
    out = np.empty((arr.shape[0], arr.shape[1] * len(AE_BANDS)))
    for start in range(0, arr.shape[0], _BATCH_WINDOWS):
        spectrum = window_spectrum(arr[start : start + _BATCH_WINDOWS], sfreq, dtype=np.float64)
        out[start : start + _BATCH_WINDOWS] = band_features_from_psd(spectrum.freqs, spectrum.psd)
    return out


def band_features_from_psd(freqs: np.ndarray, psd: np.ndarray) -> np.ndarray:
    """:func:`band_features` from a Welch PSD (e.g. ``QualityReport.spectrum``): (n_chans, n_freqs)
    gives (n_chans * 8,), a batch (n_windows, n_chans, n_freqs) gives (n_windows, n_chans * 8)."""
    freqs = np.asarray(freqs, dtype=np.float64)
    psd = np.asarray(psd)
    if freqs.ndim != 1 or freqs.size < 2 or psd.ndim not in (2, 3) or psd.shape[-1] != freqs.size:
        raise ValueError(
            f"psd: expected shape (n_chans, n_freqs) or (n_windows, n_chans, n_freqs) with "
            f"n_freqs = len(freqs) = {freqs.size} >= 2; got {psd.shape}"
        )
    powers = psd.astype(np.float64, copy=False) @ _band_weights(freqs.tobytes())
    return np.log10(powers + POWER_FLOOR_UV2).reshape(*psd.shape[:-2], -1)


@lru_cache(maxsize=16)
def _band_weights(freqs_bytes: bytes) -> np.ndarray:
    """(n_freqs, n_bands): the bin width on each band's bins, so ``psd @ w`` are band powers."""
    freqs = np.frombuffer(freqs_bytes, dtype=np.float64)
    weights = band_weights(freqs, AE_BANDS) * (freqs[1] - freqs[0])
    weights.setflags(write=False)
    return weights


class ArtifactAutoencoder:
    """Fit on windows of clean-ish EEG, then :meth:`score` new windows in [0, 1] (1 = artifact)."""

    def __init__(
        self,
        *,
        hidden: tuple[int, int] = (64, 16),
        epochs: int = 100,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        calibration_fraction: float = CALIBRATION_FRACTION,
        z_center: float = 3.0,
        z_width: float = 1.0,
        sfreq: float = SFREQ,
        seed: int = 0,
    ) -> None:
        if len(hidden) != 2 or any(not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden: expected two positive layer sizes (wide, bottleneck); got {hidden!r}")
        check_int("epochs", epochs, 1, 100_000)
        check_int("batch_size", batch_size, 1, 1_000_000)
        for name, value in (("learning_rate", learning_rate), ("z_width", z_width), ("sfreq", sfreq)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a finite value > 0; got {value!r}")
        if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
            raise ValueError(f"weight_decay: expected a value >= 0; got {weight_decay!r}")
        if not 0.0 < calibration_fraction < 1.0:
            raise ValueError(f"calibration_fraction: expected a value in (0, 1); got {calibration_fraction!r}")
        self.hidden, self.epochs, self.batch_size = tuple(hidden), epochs, batch_size
        self.learning_rate, self.weight_decay = float(learning_rate), float(weight_decay)
        self.calibration_fraction = float(calibration_fraction)
        self.z_center, self.z_width, self.sfreq, self.seed = float(z_center), float(z_width), float(sfreq), int(seed)
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        self.feature_center: np.ndarray | None = None
        self.feature_scale: np.ndarray | None = None
        self.error_center = self.error_scale = math.nan
        self.n_chans: int | None = None
        self.n_fit_windows = 0

    @property
    def is_fitted(self) -> bool:
        return bool(self.weights)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        activations = [x]
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < last:
                h = np.tanh(h)
            activations.append(h)
        return h, activations

    def _standardize(self, features: np.ndarray) -> np.ndarray:
        return (features - self.feature_center) / self.feature_scale

    def _train(self, x: np.ndarray, rng: np.random.Generator) -> None:
        # float32: twice as fast, and Adam's noise dwarfs the rounding; the fitted weights are float64.
        x = np.asarray(x, dtype=np.float32)
        n_features = x.shape[1]
        sizes = [n_features, self.hidden[0], self.hidden[1], self.hidden[0], n_features]
        shapes = [*itertools.pairwise(sizes), *((b,) for b in sizes[1:])]
        # Parameters and gradients in flat vectors (layers are views): Adam steps are vector operations.
        bounds = np.cumsum([int(np.prod(shape)) for shape in shapes])
        theta, grad = np.zeros(bounds[-1], dtype=np.float32), np.zeros(bounds[-1], dtype=np.float32)
        views = [part.reshape(shape) for part, shape in zip(np.split(theta, bounds[:-1]), shapes)]
        grad_views = [part.reshape(shape) for part, shape in zip(np.split(grad, bounds[:-1]), shapes)]
        n_layers = len(sizes) - 1
        self.weights, self.biases = views[:n_layers], views[n_layers:]
        grads_w, grads_b = grad_views[:n_layers], grad_views[n_layers:]
        for w in self.weights:  # Glorot-uniform initialization; biases start at zero
            limit = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))
            w[...] = rng.uniform(-limit, limit, size=w.shape)
        n_weights = sum(w.size for w in self.weights)  # weight decay on these, not on biases
        m, v, tmp = np.zeros_like(theta), np.zeros_like(theta), np.empty_like(theta)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        step = 0
        n = x.shape[0]
        for _ in range(self.epochs):
            order = rng.permutation(n)
            for start in range(0, n, self.batch_size):
                batch = x[order[start : start + self.batch_size]]
                out, acts = self._forward(batch)
                # d(mean squared error)/d(output), averaged over batch and features.
                delta = (out - batch) * np.float32(2.0 / batch.size)
                for layer in range(n_layers - 1, -1, -1):
                    np.matmul(acts[layer].T, delta, out=grads_w[layer])
                    np.sum(delta, axis=0, out=grads_b[layer])
                    if layer:
                        delta = (delta @ self.weights[layer].T) * (1.0 - acts[layer] ** 2)
                np.multiply(theta[:n_weights], self.weight_decay, out=tmp[:n_weights])
                grad[:n_weights] += tmp[:n_weights]
                step += 1
                m *= beta1
                np.multiply(grad, 1.0 - beta1, out=tmp)
                m += tmp
                v *= beta2
                np.multiply(grad, grad, out=tmp)
                tmp *= 1.0 - beta2
                v += tmp
                lr_t = self.learning_rate * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
                np.sqrt(v, out=tmp)
                tmp += eps
                np.divide(m, tmp, out=tmp)
                tmp *= lr_t
                theta -= tmp
        # Detach from the flat buffer so saved/loaded models hold plain float64 arrays.
        self.weights = [w.astype(np.float64) for w in self.weights]
        self.biases = [b.astype(np.float64) for b in self.biases]

    def fit(self, windows: np.ndarray | Sequence[np.ndarray], groups: Sequence | None = None) -> ArtifactAutoencoder:
        """Fit on (n_windows, n_chans, n_times) windows at ``sfreq``; returns self. ``groups`` (a label
        per window, e.g. subject) holds out whole groups for calibration, as production sees them."""
        arr = _as_windows(windows)
        self.n_chans = int(arr.shape[1])
        return self.fit_features(band_features(arr, self.sfreq), groups=groups, n_chans=self.n_chans)

    @property
    def min_fit_windows(self) -> int:
        """The fewest windows :meth:`fit_features` accepts: >= 20 to train on and >= 10 to calibrate."""
        return min_fit_windows(self.calibration_fraction)

    def fit_features(
        self, features: np.ndarray, *, groups: Sequence | None = None, n_chans: int | None = None
    ) -> ArtifactAutoencoder:
        """Fit on precomputed :func:`band_features` rows (n_windows, n_features); see :meth:`fit`."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or not np.all(np.isfinite(features)):
            raise ValueError(f"features: expected a finite 2-D array; got shape {features.shape}")
        n = features.shape[0]
        n_cal = calibration_windows(n, self.calibration_fraction)
        if not enough_windows(n, self.calibration_fraction):
            raise ValueError(
                f"windows: expected enough windows for >= 20 training and >= 10 calibration windows "
                f"(calibration_fraction={self.calibration_fraction}); got {n}"
            )
        if n_chans is not None:
            self.n_chans = int(n_chans)
        rng = np.random.default_rng(self.seed)
        is_cal = np.zeros(n, dtype=bool)
        if groups is None:
            is_cal[rng.permutation(n)[:n_cal]] = True
        else:
            labels = np.asarray(groups)
            if labels.shape != (n,):
                raise ValueError(f"groups: expected one label per window ({n}); got shape {labels.shape}")
            unique = np.unique(labels)
            if unique.size < 2:
                raise ValueError(f"groups: expected at least 2 distinct groups; got {unique.size}")
            for label in unique[rng.permutation(unique.size)]:
                if is_cal.sum() >= n_cal:
                    break
                is_cal |= labels == label
            if n - is_cal.sum() < 20:
                raise ValueError("groups: the calibration groups leave fewer than 20 training windows")
        cal, train = features[is_cal], features[~is_cal]
        q75, q25 = np.percentile(train, [75, 25], axis=0)
        self.feature_center = np.median(train, axis=0)
        self.feature_scale = np.maximum((q75 - q25) / 1.349, 1e-3)
        self._train(self._standardize(train), rng)
        log_err = np.log(self._errors(cal))
        self.error_center = float(np.median(log_err))
        self.error_scale = float(max(1.4826 * np.median(np.abs(log_err - self.error_center)), 1e-6))
        self.n_fit_windows = n
        return self

    def _errors(self, features: np.ndarray) -> np.ndarray:
        x = self._standardize(features)
        out, _ = self._forward(x)
        return np.maximum(((out - x) ** 2).mean(axis=1), 1e-12)

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("ArtifactAutoencoder: not fitted; call fit() or load() first")

    def reconstruction_error(self, windows: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Mean squared reconstruction error per window, in standardized feature units."""
        self._check_fitted()
        arr = _as_windows(windows)
        if arr.shape[1] != self.n_chans:
            raise ValueError(f"windows: expected {self.n_chans} channels (n_chans); got {arr.shape[1]}")
        return self._errors(band_features(arr, self.sfreq))

    def score_features(self, features: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] for precomputed :func:`band_features` rows, against the fitting corpus
        (:meth:`score_recording` scores a recording's windows against the recording)."""
        return self._calibrate(self._errors(self._checked(features)))

    def score_recording(self, features: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] for the :func:`band_features` rows of *one recording's* windows, each
        against the recording's own typical window rather than the fitting corpus's.

        A corpus the detector was not fitted on differs as a whole (amplifier, reference, filters,
        people): every window of it reconstructs badly, and :meth:`score_features` would call all
        of them artifacts. Here the recording's features are first moved so that its median window
        lands on the fitting sample's median (per-recording normalization, as per-subject
        normalization in EEG decoding): what is left is how each window differs from the rest of
        its recording, as an artifact does, and the calibration of the fitting corpus applies.
        Under :data:`MIN_RECORDING_WINDOWS` windows there is no typical window (of two, each is as
        far from their middle as the other): such a recording is scored against the fitting
        corpus where it reads like it (:meth:`novelty` at most ``z_center``), and otherwise not at
        all (0). A recording mostly made of one artifact has it as its typical window. The rules
        (:mod:`pipelines.quality`) do not depend on the recording and catch both."""
        features = self._checked(features)
        if features.shape[0] < MIN_RECORDING_WINDOWS:
            in_domain = self.novelty(features) <= self.z_center
            return self.score_features(features) if in_domain else np.zeros(features.shape[0])
        features = features - np.median(features, axis=0) + self.feature_center
        return self._calibrate(self._errors(features))

    def novelty(self, features: np.ndarray) -> float:
        """How far one recording's typical window lies from the fitting corpus: its median log
        reconstruction error in robust SDs of the calibration windows (about 0 in domain; above
        ``z_center``, the recording is unlike what the detector was fitted on)."""
        log_err = np.log(self._errors(self._checked(features)))
        return float((np.median(log_err) - self.error_center) / self.error_scale)

    def _checked(self, features: np.ndarray) -> np.ndarray:
        self._check_fitted()
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.feature_center.shape[0]:
            raise ValueError(
                f"features: expected shape (n_windows, {self.feature_center.shape[0]}); got {features.shape}"
            )
        return features

    def _calibrate(self, errors: np.ndarray) -> np.ndarray:
        return self._logistic((np.log(errors) - self.error_center) / self.error_scale)

    def _logistic(self, z: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(0.5 * (z - self.z_center) / self.z_width))  # stable logistic

    def score(self, windows: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Artifact scores in [0, 1] (0 clean, 1 artifact), one per window."""
        return self._calibrate(self.reconstruction_error(windows))

    def _header(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "bands": [list(b) for b in AE_BANDS],
            "power_floor_uv2": POWER_FLOOR_UV2,
            "hidden": list(self.hidden),
            **{name: getattr(self, name) for name in _HYPERPARAMETERS[1:] + _FITTED},
        }

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to ``path`` (``.npz``; arrays plus a JSON header, no pickle)."""
        self._check_fitted()
        path = Path(path)
        arrays = {f"weight_{i}": w for i, w in enumerate(self.weights)}
        arrays.update({f"bias_{i}": b for i, b in enumerate(self.biases)})
        arrays.update(feature_center=self.feature_center, feature_scale=self.feature_scale)
        arrays["header"] = np.array(json.dumps(self._header(), sort_keys=True))
        with path.open("wb") as handle:
            np.savez(handle, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ArtifactAutoencoder:
        """Read a detector written by :meth:`save`; refuses other formats and versions."""
        path = Path(path)
        with open(path, "rb") as fh:  # numpy's own error for another file suggests allow_pickle
            if fh.read(4) != b"PK\x03\x04":
                raise ValueError(f"{path}: not an .npz archive (expected the {FORMAT} file an earlier run wrote)")
        with np.load(path, allow_pickle=False) as data:
            if "header" not in data.files:
                raise ValueError(f"{path}: not an {FORMAT} file (no header)")
            header = json.loads(str(data["header"]))
            if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: expected format {FORMAT!r} version {FORMAT_VERSION}; got "
                    f"{header.get('format')!r} version {header.get('version')!r}"
                )
            same_features = (
                header["bands"] == [list(b) for b in AE_BANDS] and header["power_floor_uv2"] == POWER_FLOOR_UV2
            )
            if not same_features:
                raise ValueError(f"{path}: written with different feature bands; refit the detector")
            model = cls(hidden=tuple(header["hidden"]), **{name: header[name] for name in _HYPERPARAMETERS[1:]})
            n_layers = sum(1 for name in data.files if name.startswith("weight_"))
            model.weights = [np.array(data[f"weight_{i}"]) for i in range(n_layers)]
            model.biases = [np.array(data[f"bias_{i}"]) for i in range(n_layers)]
            model.feature_center, model.feature_scale = (np.array(data[k]) for k in ("feature_center", "feature_scale"))
        model.error_center, model.error_scale = float(header["error_center"]), float(header["error_scale"])
        model.n_chans, model.n_fit_windows = header["n_chans"], header["n_fit_windows"]
        return model
