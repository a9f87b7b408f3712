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
from eegfm.pipelines.datasets import named_in_reason
from eegfm.pipelines.privacy.redact import PathRedactor
from eegfm.serving.api.signals import parse_signals, save_fif
from eegfm.serving.api.stopping import checkpoint
from eegfm.serving.api.uploads import UNZIP_FACTOR, BodyGuard, unpacked_upload

JSON_MAX_MB = 64.0  # parsed as a stream, at most 4x its bytes in memory (api.signals): larger bodies upload a file
MAX_BATCH_FILES = 64
MIN_UPLOAD_KB_PER_S = 16.0  # 128 kbit/s: below any working link, far above a byte every few seconds


@dataclasses.dataclass
class ServeLimits(Config):
    """What one request may cost: its size, its silences and (JSON) its parsed size."""

    max_upload_mb: float = 2048.0
    upload_timeout: float = 30.0  # seconds an upload may send nothing before it gets 408
    json_max_mb: float = JSON_MAX_MB
    min_upload_kb_per_s: float = MIN_UPLOAD_KB_PER_S  # the slowest average an upload may keep (0: any)

    def validate(self) -> None:
        check_range("max_upload_mb", self.max_upload_mb, 1e-3, 1e6)
        check_range("upload_timeout", self.upload_timeout, 0.1, 3600)
        check_range("json_max_mb", self.json_max_mb, 1e-3, 1e4)
        check_range("min_upload_kb_per_s", self.min_upload_kb_per_s, 0, 1e6)

    def body_guard(self, receive, json: bool = False) -> BodyGuard:
        """The `BodyGuard` for a request's body under these limits (a JSON body's own size limit)."""
        if json:
            return BodyGuard(receive, self.json_max_bytes, self.upload_timeout, "the JSON body limit", self._min_rate)
        return BodyGuard(receive, self.max_upload_bytes, self.upload_timeout, min_rate=self._min_rate)

    @property
    def _min_rate(self) -> float:
        return self.min_upload_kb_per_s * 1024

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
        ``echo_name``. Entries that are no recording (a sidecar, a hidden file, a zip member that
        could not be extracted) are listed under ``ignored`` with why. 422 when nothing was scored,
        whether the upload held no recording or every one was quarantined. ValueError/UploadError
        for an upload that is not a recording file or archive."""
        expanded = unpacked_upload(path, ext, self.limits.expanded_max_bytes)
        target = str(expanded.target)
        try:
            items, ignored = self.predictor.listed([target])
        except (FileNotFoundError, ConfigError):
            items, ignored = [], []
        recordings = []
        for recording in self.predictor.predict_items(items, redact=not echo_name):
            recordings.append(recording)
            checkpoint()  # between recordings: a client that left stops a zip of many
        for recording in recordings if echo_name else ():  # as the client knows them, not by the temporary path
            recording.input = _client_name(recording.input, target, ext, filename)
        if self.metrics is not None:
            self.metrics.count_recordings(recordings)
        reply: dict[str, Any] = {"model": self.description, "recordings": [r.as_dict() for r in recordings]}
        recordings_named = {item.path for item in items}
        others = self._ignored([*expanded.skipped, *ignored], recordings_named, target, ext, filename, echo_name)
        if others:
            reply["ignored"] = others
        if any(r.status == "processed" for r in recordings):
            return 200, reply
        why = "every recording was quarantined" if recordings else "the upload holds no recording file"
        return 422, {"error": why + (" (ignored says what else it held)" if others else ""), "status": 422, **reply}

    def _ignored(self, entries, recordings, target: str, ext: str, filename: str, echo_name: bool) -> list[dict]:
        """Entries that are no recording as a reply lists them: under redaction named as a
        recording is (its name's keyed token), their reasons scrubbed of the names they hold.

        Each reason is scrubbed of the names it can hold (`_named_with`), not of every entry's: a
        scrubber tests each of its paths against each text, and one of all 10,000 entries of a zip
        took minutes (quadratic)."""
        redactor = PathRedactor(self.predictor.name_key, not echo_name)
        listed = []
        for entry in entries:
            checkpoint()
            scrub = redactor.scrubber(_named_with(entry.path, recordings))
            name = entry.path.rstrip("/").rsplit("/", 1)[-1]
            shown = _client_name(entry.path, target, ext, filename) if echo_name else redactor.name(name)
            listed.append({"input": shown, "reason": scrub(entry.reason)})
        return listed

    def predict_stream(self, source, folder: Path, ext: str, filename: str, echo_name: bool) -> tuple[int, dict]:
        """:meth:`predict_file` for a file object (a multipart part), copied into ``folder`` first."""
        path = folder / f"upload{ext}"
        with path.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        return self.predict_file(path, ext, filename, echo_name)

    def predict_json(self, body: Path, folder: Path, echo_name: bool) -> tuple[int, dict[str, Any]]:
        """:meth:`predict_file` for a JSON recording saved at ``body`` (``signals.parse_signals``;
        SignalsError names a wrong field), saved as a FIF file first. Its samples are freed before
        the pipeline reads that file: kept to the end, as before, they added 1.2x the body to the
        pipeline's working set of each request (four bodies at once: 5.6x each body over idle)."""
        path = folder / "signals.fif"
        save_fif(*parse_signals(body), path)  # the parsed arrays are garbage once this returns
        body.unlink()
        return self.predict_file(path, ".fif", "signals.fif", echo_name)


def _named_with(path: str, recordings: set[str]) -> list[str]:
    """The files a reason about ``path`` may name: ``path``, a file it names itself (an AppleDouble
    ``._x.edf``'s ``x.edf``), and the recording its name extends (Curry's ``x.cdt`` for
    ``x.cdt.dpa``; a part named otherwise, ``x.21e`` of ``x.eeg``, shares its stem and goes with it)."""
    extended = [path[:i] for i, char in enumerate(path) if char == "." and path[:i] in recordings]
    return [path, *named_in_reason(path), *extended]


def _client_name(path: str, target: str, ext: str, filename: str) -> str:
    """``path`` (below the upload's temporary ``target``) as the client knows it: its file name, or
    inside its zip."""
    if ext != ".zip":
        return filename
    return f"{filename}/{path[len(target) :].lstrip('/')}"
