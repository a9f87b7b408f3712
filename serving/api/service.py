"""The model behind the routes: uploads saved by the routes are expanded, read and scored here, in
worker threads, with only the model's forward passes one at a time (a lock around the backend).

Reading, decompression and the pipeline's preprocessing of one request run while another's windows
are being scored: a slow or hostile upload holds its own thread, never the model.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path
from typing import Any

from eegfm.core.config import Config, ConfigError, check_range
from eegfm.serving.api.signals import save_fif
from eegfm.serving.api.uploads import UNZIP_FACTOR, expand_upload

JSON_MAX_MB = 64.0  # a JSON array of floats takes ~3x its bytes to parse: larger bodies upload a file
MAX_BATCH_FILES = 64


@dataclasses.dataclass
class ServeLimits(Config):
    """What one request may cost: its size, its silences and (JSON) its parsed size."""

    max_upload_mb: float = 2048.0
    upload_timeout: float = 30.0  # seconds an upload may send nothing before it gets 408
    json_max_mb: float = JSON_MAX_MB

    def validate(self) -> None:
        check_range("max_upload_mb", self.max_upload_mb, 1e-3, 1e6)
        check_range("upload_timeout", self.upload_timeout, 0.1, 3600)
        check_range("json_max_mb", self.json_max_mb, 1e-3, 1e4)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def json_max_bytes(self) -> int:
        return int(min(self.json_max_mb, self.max_upload_mb) * 2**20)

    @property
    def expanded_max_bytes(self) -> int:
        """The most an upload may unpack or decompress to."""
        return UNZIP_FACTOR * self.max_upload_bytes


class LockedBackend:
    """A predictor's backend whose forward passes run one at a time (the model's lock)."""

    def __init__(self, backend, lock: threading.Lock) -> None:
        self._backend, self._lock = backend, lock

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def logits(self, inputs):
        with self._lock:
            return self._backend.logits(inputs)

    def logits_and_samples(self, inputs):
        with self._lock:
            return self._backend.logits_and_samples(inputs)


class PredictionService:
    """A loaded Predictor (loaded once per process) answering uploads; see the module docstring."""

    def __init__(self, predictor, limits: ServeLimits, metrics=None) -> None:
        self.predictor, self.limits, self.metrics = predictor, limits, metrics
        self.model_lock = threading.Lock()
        predictor.backend = LockedBackend(predictor.backend, self.model_lock)
        self.description = predictor.describe()

    def predict_file(self, path: Path, ext: str, filename: str, echo_name: bool) -> tuple[int, dict[str, Any]]:
        """Status and reply for an upload saved at ``path`` (in a private folder of its own); the
        recordings named by index and token, their non-electrode labels by token, unless
        ``echo_name``. ValueError/UploadError for an upload that is not a recording."""
        target = expand_upload(path, ext, self.limits.expanded_max_bytes)
        try:
            recordings = list(self.predictor.predict([str(target)], redact=not echo_name))
        except (FileNotFoundError, ConfigError):
            raise ValueError("the upload holds no recording file") from None
        for recording in recordings if echo_name else ():  # as the client knows them, not by the temporary path
            inside = recording.input[len(str(target)) :].lstrip("/")
            recording.input = f"{filename}/{inside}" if ext == ".zip" else filename
        if self.metrics is not None:
            self.metrics.count_recordings(recordings)
        reply = {"model": self.description, "recordings": [r.as_dict() for r in recordings]}
        return (200 if any(r.status == "processed" for r in recordings) else 422), reply

    def predict_stream(self, source, folder: Path, ext: str, filename: str, echo_name: bool) -> tuple[int, dict]:
        """:meth:`predict_file` for a file object (a multipart part), copied into ``folder`` first."""
        path = folder / f"upload{ext}"
        with path.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        return self.predict_file(path, ext, filename, echo_name)

    def predict_signals(self, parsed, folder: Path, echo_name: bool) -> tuple[int, dict[str, Any]]:
        """:meth:`predict_file` for a JSON recording (``signals.parse_signals``'s result)."""
        signals, sfreq, names = parsed
        path = folder / "signals.fif"
        save_fif(signals, sfreq, names, path)
        return self.predict_file(path, ".fif", "signals.fif", echo_name)
