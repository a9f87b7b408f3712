"""A fused model: what a benchmark row is, as a folder that serving loads like any model.

A row of ``eegfm-benchmark`` (the recipe, a baseline, a stack) is a normalised weighted geometric
mean of *parts*, each a class distribution of one window::

    log p(c | x) = sum_k w_k log p_k(c | x) + const,    sum_k w_k = 1

- ``network``: fine-tuned eegfm networks (model folders), the mean of their calibrated probabilities
  (a seed ensemble where there are several); serving runs them on any backend (ONNX included);
- ``eegnet``: EEGNet networks (``model.eegnet``), the mean of their probabilities;
- ``readout``: a linear readout (``model.linear_readout``) of named feature parts of the window:
  ``embedding`` (the frozen pretrained encoder's ``pooled`` output, an eegfm model folder),
  ``powers`` (``spectral_features.band_power_features``) and the tangent-space covariances
  ``riemann``/``logeuclid`` (``spectral_features.TangentMap``);
- ``prior``: fixed class probabilities.

Folder: ``fused.json`` (format, labels, window length, parts with their weights and files, a card:
the row's name, description, the benchmark's metrics, the date), ``readout.safetensors`` (every
array: the readout's scaler and coefficients, the tangent maps' reference points),
``eegnet-<i>.safetensors``, and model folders (``network-<i>/``, ``encoder/``), plus the
preprocessing recipe ``preprocess.json``. Nothing in it is pickled: loading runs no code from the folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from eegfm.contract.model_files import FUSED as FUSED_FILE
from eegfm.core.config import ConfigError
from eegfm.model import eegnet, spectral_features
from eegfm.model.architectures import quiet_transformers
from eegfm.model.linear_readout import LinearReadout
from eegfm.model.modeling import EEGFMModel
from eegfm.model.registry import load_single_model, single_model_config

FORMAT = "eegfm-fused"
FORMAT_VERSION = 1
PART_KINDS = ("network", "eegnet", "readout", "prior")
FEATURE_PARTS = ("embedding", "powers", *spectral_features.METRICS)
READOUT_FILE = "readout.safetensors"
_FLOOR = 1e-9  # a probability of 0 would veto a class outright
_BATCH = 64


def check_weights(weights: Sequence[float]) -> None:
    """ValueError unless ``weights`` are numbers in [0, 1] that sum to 1."""
    if any(not 0.0 <= w <= 1.0 for w in weights) or not math.isclose(sum(weights), 1.0, abs_tol=1e-9):
        raise ValueError(f"weights: expected numbers in [0, 1] that sum to 1; got {list(weights)}")


def fuse(parts: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """[N, C] the normalised weighted geometric mean of ``parts`` (each [N, C]) with ``weights``."""
    if len(parts) != len(weights) or not parts:
        raise ValueError(f"weights: expected one per part ({len(parts)}); got {len(weights)}")
    check_weights(weights)
    log = sum(w * np.log(np.clip(p, _FLOOR, 1.0)) for p, w in zip(parts, weights))
    fused = np.exp(log - log.max(axis=1, keepdims=True))
    return fused / fused.sum(axis=1, keepdims=True)


def encoder_embedding(encoder_dir: Path) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """[N, D] windows' ``pooled`` embedding by the frozen eegfm encoder in ``encoder_dir`` (a
    pretraining or fine-tuning model folder), of ``eeg`` [N, 19, T] and ``channel_mask`` [N, 19]."""
    with quiet_transformers():  # a pretraining folder has no head: the missing-keys table is expected
        model = EEGFMModel.from_pretrained(encoder_dir).eval()

    def featurize(eeg: np.ndarray, channel_mask: np.ndarray) -> np.ndarray:
        parts = [np.zeros((0, model.config.hidden_size))]
        with torch.no_grad():
            for start in range(0, len(eeg), _BATCH):
                window = torch.as_tensor(eeg[start : start + _BATCH], dtype=torch.float32)
                mask = torch.as_tensor(channel_mask[start : start + _BATCH], dtype=torch.float32)
                parts.append(model.forward_features(window, channel_mask=mask).pooled.double().numpy())
        return np.concatenate(parts)

    return featurize


@dataclasses.dataclass
class Readout:
    """A linear readout of ``features`` (names of :data:`FEATURE_PARTS`, concatenated in order)."""

    features: tuple[str, ...]
    linear: LinearReadout
    tangent: dict[str, spectral_features.TangentMap] = dataclasses.field(default_factory=dict)
    encoder_dir: Path | None = None

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in FEATURE_PARTS]
        if unknown or not self.features:
            raise ConfigError(f"readout features: expected names of {', '.join(FEATURE_PARTS)}; got {unknown}")
        missing = [m for m in self.features if m in spectral_features.METRICS and m not in self.tangent]
        if missing or ("embedding" in self.features and self.encoder_dir is None):
            raise ConfigError(f"readout: no state for its features {missing or ['embedding']}")
        self._embedding = None

    def feature_parts(self, eeg: np.ndarray, channel_mask: np.ndarray) -> dict[str, np.ndarray]:
        """Each of the readout's feature parts of ``eeg`` [N, 19, T] (uV), by name."""
        found: dict[str, np.ndarray] = {}
        if "embedding" in self.features:
            self._embedding = self._embedding or encoder_embedding(self.encoder_dir)
            found["embedding"] = self._embedding(eeg, channel_mask)
        if "powers" in self.features:
            found["powers"] = spectral_features.band_power_features(eeg)
        if any(m in self.features for m in self.tangent):
            covariances = spectral_features.band_covariances(eeg)
            found.update({m: t.transform(covariances) for m, t in self.tangent.items() if m in self.features})
        return found

    def probabilities_of(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """[N, C] probabilities of feature ``parts`` (:meth:`feature_parts`' names)."""
        return self.linear.probabilities(np.concatenate([parts[name] for name in self.features], axis=1))

    def probabilities(self, eeg: np.ndarray, channel_mask: np.ndarray) -> np.ndarray:
        return self.probabilities_of(self.feature_parts(eeg, channel_mask))


@dataclasses.dataclass
class Part:
    """One part of a fused model and its weight. ``folders``: a network part's model folders;
    ``eegnets``: an eegnet part's networks; ``readout``; ``prior``: a prior part's probabilities."""

    kind: str
    weight: float
    folders: list[Path] = dataclasses.field(default_factory=list)
    eegnets: list[torch.nn.Module] = dataclasses.field(default_factory=list)
    eegnet_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    readout: Readout | None = None
    prior: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in PART_KINDS:
            raise ConfigError(f"part kind: expected one of {', '.join(PART_KINDS)}; got {self.kind!r}")
        held = {"network": self.folders, "eegnet": self.eegnets, "readout": self.readout, "prior": self.prior}
        if held[self.kind] is None or (isinstance(held[self.kind], list) and not held[self.kind]):
            raise ConfigError(f"part {self.kind}: expected its {self.kind} state; got none")

    def probabilities(self, eeg: np.ndarray, channel_mask: np.ndarray, n_classes: int) -> np.ndarray:
        """[N, C] of the windows; a network part's need its networks (``network_probabilities``)."""
        if self.kind == "eegnet":
            return np.mean([eegnet.probabilities(m, eeg, n_classes) for m in self.eegnets], axis=0)
        if self.kind == "readout":
            return self.readout.probabilities(eeg, channel_mask)
        if self.kind == "prior":
            return np.tile(self.prior, (len(eeg), 1))
        raise ValueError("a network part's probabilities come from its networks (model folders)")


def network_probabilities(folder: Path, eeg: np.ndarray, channel_mask: np.ndarray) -> np.ndarray:
    """[N, C] calibrated class probabilities of the fine-tuned model in ``folder`` (torch)."""
    with quiet_transformers():  # one loading bar per model per call would bury a run's log
        model = load_single_model(folder)
    parts = []
    for start in range(0, len(eeg), _BATCH):
        window = torch.as_tensor(eeg[start : start + _BATCH], dtype=torch.float32)
        mask = torch.as_tensor(channel_mask[start : start + _BATCH], dtype=torch.float32)
        probs = model.predict(eeg=window, channel_mask=mask).double().reshape(len(window), -1)
        parts.append(torch.cat([1 - probs, probs], dim=1) if probs.shape[1] == 1 else probs)
    return torch.cat(parts).numpy() if parts else np.zeros((0, 0))


@dataclasses.dataclass
class FusedModel:
    """A benchmark row as a model (module docstring)."""

    labels: tuple[str, ...]
    parts: list[Part]
    window_seconds: float
    card: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise ConfigError(f"labels: expected two or more class names; got {list(self.labels)}")
        check_weights([p.weight for p in self.parts])

    @property
    def network_folders(self) -> list[Path]:
        return [folder for part in self.parts if part.kind == "network" for folder in part.folders]

    def probabilities(self, eeg: np.ndarray, channel_mask: np.ndarray, network: np.ndarray | None = None) -> np.ndarray:
        """[N, C] fused probabilities of ``eeg`` [N, 19, T] (uV at 256 Hz) and ``channel_mask``.
        ``network``: the network part's [N, C] where the caller ran its networks (a serving
        backend); else they run here in torch."""
        found = []
        for part in self.parts:
            if part.kind != "network":
                found.append(part.probabilities(eeg, channel_mask, len(self.labels)))
            elif network is not None:
                found.append(network)
            else:
                found.append(np.mean([network_probabilities(f, eeg, channel_mask) for f in part.folders], axis=0))
        return fuse(found, [part.weight for part in self.parts])

    def save(self, folder: Path) -> Path:
        """Write the model into ``folder`` (module docstring); returns ``fused.json``'s path."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        described = []
        for index, part in enumerate(self.parts):
            entry: dict[str, Any] = {"kind": part.kind, "weight": part.weight}
            if part.kind == "network":
                entry["folders"] = []
                for i, source in enumerate(part.folders):
                    name = f"network-{index}-{i}"
                    shutil.copytree(source, folder / name, dirs_exist_ok=True)
                    entry["folders"].append(name)
            elif part.kind == "eegnet":
                entry.update(settings=part.eegnet_settings, files=[])
                for i, model in enumerate(part.eegnets):
                    name = f"eegnet-{index}-{i}.safetensors"
                    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
                    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(folder / name))
                    entry["files"].append(name)
            elif part.kind == "readout":
                entry.update(_save_readout(part.readout, folder, f"part{index}.", arrays))
            else:
                entry["probabilities"] = [float(p) for p in part.prior]
            described.append(entry)
        if arrays:
            save_file(arrays, str(folder / READOUT_FILE))
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "labels": list(self.labels),
            "window_seconds": self.window_seconds,
            "parts": described,
            "card": self.card,
        }
        path = folder / FUSED_FILE
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> FusedModel:
        """The model saved in ``folder``; ConfigError naming the file and field where it is not one."""
        folder = Path(folder)
        path = folder / FUSED_FILE
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: expected a fused model's {FUSED_FILE}; {err}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ConfigError(f"{path}: format: expected {FORMAT!r}")
        if document.get("format_version") != FORMAT_VERSION:
            found = document.get("format_version")
            raise ConfigError(f"{path}: format_version: expected {FORMAT_VERSION}; got {found}")
        arrays = load_file(str(folder / READOUT_FILE)) if (folder / READOUT_FILE).is_file() else {}
        labels = tuple(str(label) for label in document.get("labels", []))
        try:
            parts = [_load_part(entry, folder, arrays, len(labels)) for entry in document["parts"]]
            return cls(labels, parts, float(document["window_seconds"]), dict(document.get("card", {})))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: expected a part list with each part's state; {err!r}") from None


def _save_readout(readout: Readout, folder: Path, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    arrays.update(readout.linear.arrays(prefix))
    for metric, tangent in readout.tangent.items():
        arrays[f"{prefix}tangent.{metric}"] = np.ascontiguousarray(tangent.reference)
    entry: dict[str, Any] = {"features": list(readout.features), "prefix": prefix, "tangent": sorted(readout.tangent)}
    entry["bands"] = [list(band) for band in spectral_features.BANDS]
    if readout.encoder_dir is not None:
        shutil.copytree(readout.encoder_dir, folder / f"{prefix}encoder", dirs_exist_ok=True)
        entry["encoder"] = f"{prefix}encoder"
    return entry


def _load_part(entry: dict[str, Any], folder: Path, arrays: dict[str, np.ndarray], n_classes: int) -> Part:
    kind, weight = entry["kind"], float(entry["weight"])
    if kind == "network":
        return Part(kind, weight, folders=[folder / name for name in entry["folders"]])
    if kind == "eegnet":
        settings = dict(entry["settings"])
        models = []
        for name in entry["files"]:
            model = eegnet.build_model(settings["n_chans"], settings["n_times"], n_classes, settings["drop_prob"])
            model.load_state_dict({k: torch.from_numpy(v) for k, v in load_file(str(folder / name)).items()})
            models.append(model.eval())
        return Part(kind, weight, eegnets=models, eegnet_settings=settings)
    if kind == "readout":
        if [tuple(b) for b in entry.get("bands", [])] != list(spectral_features.BANDS):
            raise ValueError(f"readout bands: expected {list(spectral_features.BANDS)}; got {entry.get('bands')}")
        prefix = entry["prefix"]
        tangent = {m: spectral_features.TangentMap(m, arrays[f"{prefix}tangent.{m}"]) for m in entry["tangent"]}
        encoder = folder / entry["encoder"] if entry.get("encoder") else None
        linear = LinearReadout.from_arrays(arrays, n_classes, prefix)
        return Part(kind, weight, readout=Readout(tuple(entry["features"]), linear, tangent, encoder))
    return Part(kind, weight, prior=np.asarray(entry["probabilities"], dtype=np.float64))


@dataclasses.dataclass(frozen=True)
class FusedConfig:
    """What serving reads of any model's config, for a fused model: its labels, a classifier head
    whose outputs are already calibrated probabilities (temperature 1), raw EEG alone, and the
    patch size its networks need whole multiples of."""

    labels: tuple[str, ...]
    patch_size: int = 1
    head: str = "multiclass"
    temperature: float = 1.0
    modalities: tuple[str, ...] = ("eeg",)
    spectrogram_pool: int = 1
    mc_passes: int = 0
    architectures: tuple[str, ...] = ("FusedModel",)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @classmethod
    def from_folder(cls, folder: str | Path) -> FusedConfig:
        model = FusedModel.load(folder)
        sizes = [int(single_model_config(f).patch_size) for f in model.network_folders]
        return cls(model.labels, math.lcm(*sizes) if sizes else 1)
