"""Predictions for raw EEG from a fine-tuned model: the pipeline's steps, then the model, per window.

``Predictor(model_dir)`` reads a fine-tuning run (or its ``model/``) and the preprocessing recipe
saved beside the model; ``predict(inputs)`` takes what ``eegfm-preprocess --input`` takes and gives
one :class:`RecordingPrediction` per recording: every window the pipeline would have written, scored
in time order, or the quarantine stage and reason. The windows are fixed ones over the whole
recording whatever data set its path names, so a file scores alike from a folder and as an upload;
``event_windows`` keeps a data set's event windows (EEGMMI's trials) instead. Windows go through the pipeline's own
``process_recording`` and become the model's inputs as the training loader's batches do
(``inference.model_inputs``), so serving cannot drift from training. Pseudonyms use a random key
per predictor and are never output; windows are scored ``batch_size`` at a time as they are cut,
so memory stays at one batch. Unless ``redact`` is off, a recording is named by its index and a
keyed token of its file name (``file-<hex>.edf``, ``pipelines.privacy.redact``; under ``name_key``,
random per predictor unless given), never its path,
and channel labels that are no electrode's by ``chan-<hex>``, in everything it reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from eegfm.contract import layout
from eegfm.contract.model_files import DESCRIPTIONS, is_ensemble
from eegfm.contract.preprocess_spec import load_preprocess_spec
from eegfm.contract.schema import CHANNELS, SFREQ
from eegfm.core.config import Config, ConfigError, check_int, check_option, check_range
from eegfm.core.logs import get_logger
from eegfm.core.palette import class_colours
from eegfm.inference.backends import BACKENDS, make_backend
from eegfm.inference.clinical import flagged_episodes, minutes_by_class, read_windows, recording_answer
from eegfm.inference.model_inputs import model_inputs
from eegfm.inference.model_store import resolve_model_dir
from eegfm.inference.recommendation import WindowEvidence, load_rules
from eegfm.metrics.losses import binary_logits
from eegfm.model.architectures import load_model_config
from eegfm.pipelines.datasets import DATASETS, Ignored, SourceItem, discover
from eegfm.pipelines.job.process import Outcome, PreprocessConfig, Window, process_recording
from eegfm.pipelines.privacy.redact import PathRedactor
from eegfm.pipelines.privacy.redact_events import redacted_outcome
from eegfm.pipelines.quality.artifact_autoencoder import ArtifactAutoencoder

log = get_logger(__name__)
OnBatch = Callable[[int, float], None]  # windows scored so far, seconds of the recording they reach


@dataclasses.dataclass
class PredictConfig(Config):
    """How windows are scored; the windows themselves follow the model's preprocessing recipe."""

    backend: str = "torch"
    device: str = "cpu"
    batch_size: int = 32
    calibrated: bool = True  # divide logits by the temperature fitted on validation
    stride_seconds: float | None = None  # None: the training windows' stride
    artifact_model: bool = True  # score artifacts with the training data's autoencoder as well as rules
    threads: int | None = None
    precision: str = "fp16"  # tensorrt engines only
    redact: bool = True  # name recordings by index and keyed token, non-electrode labels by token
    mc_passes: int | None = None  # MC-dropout samples per window (0: none); None: the model's config
    recommendation_rules: str | None = None  # a rule table (YAML); None: inference/recommendation.yaml
    # False: fixed windows over the whole recording, whatever data set the file is found to be (as an
    # upload to eegfm-serve, which no layout names, always is); True: where the data set labels its own
    # events (EEGMMI's T1/T2 trials), the windows the pipeline cut at them for training, and only those
    event_windows: bool = False

    def validate(self) -> None:
        check_option("backend", self.backend, BACKENDS)
        check_option("device", self.device, ("cpu", "cuda"))
        check_int("batch_size", self.batch_size, 1)
        if self.stride_seconds is not None:
            check_range("stride_seconds", self.stride_seconds, 0.5, 3600)
        check_int("threads", self.threads, 1, optional=True)
        check_option("precision", self.precision, ("fp16", "bf16", "fp32"))
        check_option("redact", self.redact, (True, False))
        check_int("mc_passes", self.mc_passes, 0, 1000, optional=True)
        check_option("event_windows", self.event_windows, (True, False))


@dataclasses.dataclass
class WindowPrediction:
    start_s: float
    duration_s: float
    # class probabilities in label order (a regression head: the one predicted value)
    outputs: tuple[float, ...]
    artifact_score: float
    masked_channels: tuple[str, ...]  # interpolated for this window (missing or repaired electrodes)
    votes: tuple[float, ...] = ()  # expert votes where the input carries them (the HMS layout)
    # the clinical reading (inference.clinical): None / {} for a regression head
    predicted_class: str | None = None
    class_probabilities: dict[str, float] = dataclasses.field(default_factory=dict)
    confidence: float | None = None
    uncertainty: dict[str, Any] = dataclasses.field(default_factory=dict)  # entropy, mutual_information, passes
    clinical_recommendation: str = ""
    recommendation_rule: str = ""
    model_version: str = ""


@dataclasses.dataclass
class RecordingPrediction:
    """One input recording: its windows' predictions, or why it was quarantined."""

    input: str  # the path, or under redaction its file name's keyed token (file-<hex>.edf)
    status: str  # 'processed' | 'quarantined'
    labels: tuple[str, ...]
    index: int = 0  # 1, 2 ... in the order the recordings were scored
    eeg_id: str = ""  # a Kaggle HMS recording's own numeric id (its parquet's name): not an identifier
    windows: list[WindowPrediction] = dataclasses.field(default_factory=list)
    stage: str = ""
    reason: str = ""
    dataset: str = ""
    eeg_seconds: float = 0.0
    sfreq_in: float = 0.0
    interpolated: tuple[str, ...] = ()
    line_freq: int | None = None
    rejected_windows: int = 0
    rejection_rules: dict[str, int] = dataclasses.field(default_factory=dict)
    model_version: str = ""
    flagged: tuple[str, ...] = ()  # the recommendations that make flagged episodes

    def summary(self) -> dict[str, Any]:
        """The recording at a glance: mean outputs over its windows and the most likely label; for a
        classifier, ``recording``: that answer with its interval (``clinical.recording_answer``)."""
        out: dict[str, Any] = {
            "index": self.index,
            "input": self.input,
            **({"eeg_id": self.eeg_id} if self.eeg_id else {}),
            "status": self.status,
            "stage": self.stage,
            "reason": self.reason,
            "dataset": self.dataset,
            "eeg_seconds": round(self.eeg_seconds, 3),
            "sfreq_in": self.sfreq_in,
            "interpolated": list(self.interpolated),
            "line_freq": self.line_freq,
            "windows": len(self.windows),
            "rejected_windows": self.rejected_windows,
            "rejection_rules": self.rejection_rules,
        }
        if self.windows:
            mean = np.mean([w.outputs for w in self.windows], axis=0)
            out["mean_outputs"] = dict(zip(self.labels, map(float, mean), strict=True))
            if len(self.labels) > 1:
                out["predicted"] = self.labels[int(mean.argmax())]
                out["windows_by_label"] = dict(Counter(self.labels[int(np.argmax(w.outputs))] for w in self.windows))
                out["recording"] = recording_answer(self.windows, self.labels)
            out["mean_artifact_score"] = float(np.mean([w.artifact_score for w in self.windows]))
        out.update(self.clinical_summary())
        return out

    def clinical_summary(self) -> dict[str, Any]:
        """Minutes per class, recommendations per window and the flagged episodes."""
        return {
            "model_version": self.model_version,
            "minutes_by_class": minutes_by_class(self.windows, self.labels),
            "recommendations": dict(Counter(w.clinical_recommendation for w in self.windows)),
            "flagged_episodes": flagged_episodes(self.windows, self.flagged),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "labels": list(self.labels),
            "window_predictions": [dataclasses.asdict(w) for w in self.windows],
        }


# what the pipeline's Outcome reports about a recording
_OUTCOME_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(RecordingPrediction)
    if f.name not in ("input", "labels", "windows", "index", "eeg_id", "model_version", "flagged")
)


# eval.json's held-out metrics a client sees in the model's description
_EVALUATION_KEYS = (
    "kl baseline_kl loss baseline_loss accuracy baseline_accuracy balanced_accuracy auroc auprc cohen_kappa "
    "f1_weighted ece baseline_ece brier baseline_brier r2 n_windows"
).split()


def held_out_evaluation(eval_json: Path) -> dict[str, Any] | None:
    """The run's held-out numbers from its eval.json (None without), so a served model carries its
    own evaluation: the test split, else the calibrated validation split flagged as optimistic."""
    try:
        report = json.loads(eval_json.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict):
        return None
    split = next((name for name in ("test", "val_calibrated", "val") if isinstance(report.get(name), dict)), None)
    if split is None:
        return None
    metrics = {k: report[split][k] for k in _EVALUATION_KEYS if isinstance(report[split].get(k), (int, float))}
    evaluation = {
        "split": "test" if split == "test" else "validation",
        "calibrated": split != "val",
        "metrics": metrics,
    }
    if split != "test":
        evaluation["note"] = (
            "validation windows, which also chose the checkpoint and the temperature: an "
            "optimistic estimate (fine-tune with test_fraction > 0 for a test split)"
        )
    return evaluation


class Predictor:
    """A fine-tuned model behind the pipeline's preprocessing; see the module docstring."""

    def __init__(self, model: str | Path, config: PredictConfig | None = None, name_key: bytes | None = None) -> None:
        self.config = config or PredictConfig()
        self.model_dir, run = resolve_model_dir(model)
        self.model_config = load_model_config(self.model_dir)
        if any(name.endswith("ForPretraining") for name in self.model_config.architectures or []):
            raise ConfigError(
                f"--model {model}: a {', '.join(self.model_config.architectures)} (a pretraining "
                "encoder, whose task head is untrained); expected a fine-tuned model"
            )
        # runs made before the recipe was saved beside the model: their data's manifest has it
        data = run.get("data") or []
        self.spec = load_preprocess_spec(self.model_dir, [data] if isinstance(data, str) else list(data))
        preprocess = PreprocessConfig.from_dict(self.spec["config"])
        if self.config.stride_seconds is not None:
            preprocess = dataclasses.replace(preprocess, stride_seconds=self.config.stride_seconds)
        if "spectrogram" not in self.model_config.modalities:  # computed for nothing otherwise
            preprocess = dataclasses.replace(preprocess, spectrogram=False)
        self.preprocess = preprocess
        self.head = self.model_config.head
        id2label = {int(k): v for k, v in (self.model_config.id2label or {}).items()}
        labels = tuple(id2label[i] for i in sorted(id2label)) or ("negative", "positive")
        self.labels = ("value",) if self.head == "regression" else labels
        self.temperature = (
            float(self.model_config.temperature or 1.0) if self.config.calibrated and self.head != "regression" else 1.0
        )
        self.window_seconds = float(preprocess.window_seconds)
        n_times = int(round(self.window_seconds * SFREQ))
        n_times -= n_times % self.model_config.patch_size
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.backend = make_backend(
            self.config, self.model_dir, n_times=n_times, patch_size=self.model_config.patch_size
        )
        self.artifact_model = None
        if self.config.artifact_model and self.spec.get("artifact_model"):
            self.artifact_model = ArtifactAutoencoder.load(self.spec["artifact_model"])
        prior = run.get("prior")  # the class prior of the training windows
        self.prior = tuple(map(float, prior)) if isinstance(prior, list) and len(prior) == len(self.labels) else None
        self.evaluation = held_out_evaluation(self.model_dir.parent / layout.EVAL)
        self._key = secrets.token_bytes(32)  # pseudonyms inside the records; never output
        # the recordings' tokens: a --pseudonym_key_file's key gives those eegfm-preprocess and eegfm-redact give
        self.name_key = name_key or secrets.token_bytes(32)
        self._config_hash = preprocess.config_hash()
        self.rules = load_rules(self.config.recommendation_rules).for_labels(self.labels)
        self.model_version = model_version(self.model_dir)

    def describe(self) -> dict[str, Any]:
        """What a client needs to read the predictions."""
        return {
            "labels": list(self.labels),
            "class_colours": class_colours(self.labels),  # the page draws the classes as the CLI's pictures do
            "head": self.head,
            "temperature": self.temperature,
            "window_seconds": self.window_seconds,
            "stride_seconds": float(self.preprocess.stride_seconds),
            "sfreq": SFREQ,
            "channels": list(CHANNELS),
            "backend": self.backend.name,
            "preprocess_config_hash": self.spec["config_hash"],
            "artifact_model": "autoencoder and rules" if self.artifact_model is not None else "rules",
            "evaluation": self.evaluation,
            "model_version": self.model_version,
            "uncertainty": {
                "method": "the ensemble's members"
                if self.is_ensemble
                else "last-layer Monte-Carlo dropout with fixed masks (the head only)",
                "passes": self.mc_passes,
            },
            "recommendation": {
                "rules": [rule.name for rule in self.rules.rules],
                "default": self.rules.default,
                "flagged": list(self.rules.flagged),
            },
        }

    @property
    def is_ensemble(self) -> bool:
        return is_ensemble(self.model_dir)

    @property
    def mc_passes(self) -> int:
        """MC-dropout samples per window: the configured number, else the model's."""
        if self.head == "regression":
            return 0
        if self.is_ensemble:
            return int(self.model_config.mc_passes)
        return int(self.config.mc_passes if self.config.mc_passes is not None else self.model_config.mc_passes)

    def discover(self, inputs: Sequence[str], *, dataset: str = "auto", site: str | None = None) -> list[SourceItem]:
        """The recordings the inputs hold (``discover``'s items, largest first)."""
        return self.listed(inputs, dataset=dataset, site=site)[0]

    def listed(
        self, inputs: Sequence[str], *, dataset: str = "auto", site: str | None = None
    ) -> tuple[list[SourceItem], list[Ignored]]:
        """The recordings the inputs hold (largest first), and the other entries they name with why
        each is none (a sidecar, a hidden file, a FIFO or device that is never opened)."""
        return list_inputs(inputs, dataset=dataset, site=site)

    def predict(
        self, inputs: Sequence[str], *, dataset: str = "auto", site: str | None = None, redact: bool | None = None
    ) -> Iterator[RecordingPrediction]:
        """One prediction per recording the inputs hold; ``redact`` None: the config's."""
        yield from self.predict_items(self.discover(inputs, dataset=dataset, site=site), redact=redact)

    def predict_items(
        self, items: Sequence[SourceItem], *, redact: bool | None = None, on_batch: OnBatch | None = None
    ) -> Iterator[RecordingPrediction]:
        """One prediction per item, in order; ``on_batch``: see :meth:`predict_item`."""
        redactor = PathRedactor(self.name_key, self.config.redact if redact is None else redact)
        for index, item in enumerate(items, start=1):
            yield self.predict_item(item, index, redactor, on_batch)

    def predict_item(
        self,
        item: SourceItem,
        index: int = 1,
        redactor: PathRedactor | None = None,
        on_batch: OnBatch | None = None,
    ) -> RecordingPrediction:
        """``item``'s prediction; with an enabled ``redactor`` named by its token, its labels redacted.
        ``on_batch(windows, reached_s)``: called after each batch scored, with the windows scored so far
        and where the last one ends (s), so a caller can show progress inside a long recording."""
        redactor = redactor or PathRedactor(self.name_key, self.config.redact)
        if not self.config.event_windows:
            item = fixed_windows(item)
        name = item.path.rstrip("/").rsplit("/", 1)[-1]
        result = RecordingPrediction(
            input=redactor.name(name) if redactor.enabled else item.path,
            status="quarantined",
            labels=self.labels,
            index=index,
            model_version=self.model_version,
            flagged=self.rules.flagged,
            eeg_id=_hms_eeg_id(item, name),
        )
        # numpy's BLAS threads fight over the pipeline's small matrices (4-5x slower on 2 cores)
        with threadpool_limits(limits=1, user_api="blas"):
            outcome = self._score_windows(item, result, on_batch)
        if redactor.enabled:
            outcome = redacted_outcome(outcome, item, redactor)
        for name in _OUTCOME_FIELDS:
            setattr(result, name, getattr(outcome, name))
        if outcome.status != "processed":
            result.windows = []
        result.windows.sort(key=lambda w: w.start_s)
        return result

    def _score_windows(self, item, result: RecordingPrediction, on_batch: OnBatch | None = None) -> Outcome:
        """The recording's windows scored a batch at a time into ``result``, then their artifact
        scores completed by the autoencoder over the whole recording; the pipeline's outcome
        (``process_recording`` always ends with one)."""
        pending: list[Window] = []
        features: list[np.ndarray | None] = []  # the autoencoder's, a few hundred bytes a window
        outcome = None
        for event in process_recording(item, self._key, self.preprocess, self._config_hash):
            if isinstance(event, Window):
                pending.append(event)
                features.append(event.ae_features)
                if len(pending) == self.config.batch_size:
                    result.windows += self._score(pending)
                    pending = []
                    if on_batch is not None:
                        on_batch(len(result.windows), result.windows[-1].start_s + result.windows[-1].duration_s)
            elif isinstance(event, Outcome):
                outcome = event
        if pending and outcome.status == "processed":
            result.windows += self._score(pending)
        if outcome.status == "processed":
            result.windows = self._with_autoencoder(result.windows, features)
        return outcome

    def _with_autoencoder(
        self, windows: list[WindowPrediction], features: list[np.ndarray | None]
    ) -> list[WindowPrediction]:
        """``windows`` with ``artifact_score = max(rules, autoencoder)`` and their recommendation
        read again; the autoencoder scores each window against its own recording
        (:meth:`~pipelines.quality.artifact_autoencoder.ArtifactAutoencoder.score_recording`), which needs them all."""
        if self.artifact_model is None or not windows or any(f is None for f in features):
            return windows
        ae = self.artifact_model.score_recording(np.stack(features))
        rescored = []
        for window, score in zip(windows, ae, strict=True):
            artifact = max(window.artifact_score, float(score))
            evidence = WindowEvidence(
                window.class_probabilities,
                window.uncertainty.get("entropy"),
                window.uncertainty.get("mutual_information"),
                artifact,
            )
            recommendation, rule = self.rules.recommend(evidence)
            rescored.append(
                dataclasses.replace(
                    window, artifact_score=artifact, clinical_recommendation=recommendation, recommendation_rule=rule
                )
            )
        return rescored

    def _score(self, windows: list[Window]) -> list[WindowPrediction]:
        inputs = model_inputs([w.record for w in windows], self.model_config)
        logits, samples = self.backend.logits_and_samples(inputs)
        outputs = self.outputs_of(logits)
        scores = [w.record.artifact_score for w in windows]
        regression = self.head == "regression"
        sampled = None if samples is None or regression else self.sample_outputs_of(samples)
        readings = read_windows(outputs, sampled, scores, self.labels, self.rules, regression=regression)
        mask = inputs["channel_mask"].numpy()
        return [
            WindowPrediction(
                start_s=float(w.record.window_start_s),
                duration_s=w.record.n_times / SFREQ,
                outputs=tuple(float(v) for v in row),
                artifact_score=float(score),
                masked_channels=tuple(CHANNELS[c] for c in np.flatnonzero(mask[i] == 0)),
                votes=tuple(float(v) for v in w.record.votes),
                **dataclasses.asdict(reading),
                model_version=self.model_version,
            )
            for i, (w, row, score, reading) in enumerate(zip(windows, outputs, scores, readings, strict=True))
        ]

    def sample_outputs_of(self, samples: torch.Tensor) -> np.ndarray:
        """(B, S, C) probabilities of (B, S, n_outputs) sampled logits, as :meth:`outputs_of` makes them."""
        batch, passes = samples.shape[:2]
        return self.outputs_of(samples.reshape(batch * passes, -1)).reshape(batch, passes, -1)

    def outputs_of(self, logits: torch.Tensor) -> np.ndarray:
        """Probabilities (calibrated unless configured otherwise) or regression values."""
        logits = logits.double().reshape(len(logits), -1)  # a binary head's logits may be (B,)
        if self.head == "regression":
            return logits[:, :1].numpy()
        if logits.shape[-1] == 1:  # binary: one logit for the positive class, as [0, z] over both labels
            logits = binary_logits(logits[:, 0])
        return torch.softmax(logits / self.temperature, dim=-1).numpy()


def model_version(model_dir: Path) -> str:
    """``sha256:<16 hex>`` of the model folder's config.json / ensemble.json / fused.json and weights
    (every ``*.safetensors``, an ensemble's members' and a fused model's parts too, by relative
    path): equal for the same model wherever it is copied, different after any retraining."""
    digest = hashlib.sha256()
    kept = DESCRIPTIONS
    found = [p for p in model_dir.rglob("*") if p.is_file() and (p.name in kept or p.suffix == ".safetensors")]
    for path in sorted(found, key=lambda p: p.relative_to(model_dir).as_posix()):
        digest.update(path.relative_to(model_dir).as_posix().encode())
        with path.open("rb") as fileobj:
            for chunk in iter(lambda: fileobj.read(1 << 20), b""):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"


def list_inputs(
    inputs: Sequence[str], *, dataset: str = "auto", site: str | None = None
) -> tuple[list[SourceItem], list[Ignored]]:
    """:meth:`Predictor.listed` without a model: the recordings the inputs hold (largest first) and
    the other entries they name with why each is none."""
    check_option("--dataset", dataset, DATASETS)
    items, ignored, _ = discover(list(inputs), dataset=dataset, site=site, warn_sidecars=False)
    return items, ignored


def fixed_windows(item: SourceItem) -> SourceItem:
    """``item`` windowed as any recording is, over its whole length, not at its data set's event
    annotations (``event_labels``); the windows a layout lists (HMS) stay, as they name what to score."""
    return dataclasses.replace(item, event_labels=(), event_window_s=0.0) if item.event_labels else item


def _hms_eeg_id(item: SourceItem, name: str) -> str:
    """A Kaggle HMS parquet's eeg_id (its numeric name), which --submission rows need; else ''."""
    stem = name[: -len(".parquet")] if name.lower().endswith(".parquet") else ""
    return stem if stem.isdigit() else ""
