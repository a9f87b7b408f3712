"""A fine-tuned model on its run's held-out windows, read once: per window the class logits,
the encoder's pooled embedding, the target, site, subject and recording, and the per-window KL and
top-class hit the report's subject bootstrap averages; besides, the EEG of the first window of
each target class (the report's trace pages) and each recording's Welch power spectrum."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.signal import welch
from scipy.special import xlogy

from eegfm.contract.schema import SFREQ
from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.evaluation.robustness_run import held_out, load_run
from eegfm.metrics import losses
from eegfm.metrics.classification import class_logits
from eegfm.model.architectures import quiet_transformers
from eegfm.model.modeling import EEGFMModel
from eegfm.training.data import EEGLoader, RecordFilter
from eegfm.training.finetune.objective import inputs_for, targets_of
from eegfm.training.steps import loader_config

log = get_logger(__name__)
WELCH_SECONDS = 2.0  # Welch segments (Hann, half overlapping): 0.5 Hz resolution, as mne's plot_psd draws


@dataclasses.dataclass
class Scored:
    """The held-out windows of one run with a target (classification tasks only)."""

    split: str
    task: str
    classes: list[str]
    logits: np.ndarray  # [N, C] class logits divided by the temperature
    target: np.ndarray  # [N, C] target distribution (one-hot for single labels)
    prior: np.ndarray  # [C] the training split's class prior
    embeddings: np.ndarray | None  # [N, D] the encoder's pooled output; None for other architectures
    sites: np.ndarray  # [N] site pseudonyms
    subjects: np.ndarray  # [N] subject pseudonyms
    temperature: float
    recordings: np.ndarray | None = None  # [N] recording pseudonyms
    examples: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)  # window -> its (19, T) µV EEG
    psd_freqs: np.ndarray | None = None  # [F] Hz
    psd: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # recording -> (19, F) µV²/Hz, mean

    def window_kl(self) -> np.ndarray:
        """KL(target || softmax(logits)) of each window."""
        return _kl(self.target, torch.from_numpy(self.logits).log_softmax(-1).numpy())

    def window_baseline_kl(self) -> np.ndarray:
        """KL(target || class prior) of each window: what a model that learned nothing scores."""
        log_prior = losses.class_prior_log_probs(torch.tensor(self.prior)).double().numpy()
        return _kl(self.target, np.broadcast_to(log_prior, self.target.shape))

    def window_correct(self) -> np.ndarray:
        """1 where the predicted class is the target's top class."""
        return (self.logits.argmax(-1) == self.target.argmax(-1)).astype(np.float64)

    def subset(self, keep: np.ndarray) -> Scored:
        embeddings = None if self.embeddings is None else self.embeddings[keep]
        return dataclasses.replace(
            self,
            logits=self.logits[keep],
            target=self.target[keep],
            embeddings=embeddings,
            sites=self.sites[keep],
            subjects=self.subjects[keep],
            recordings=None if self.recordings is None else self.recordings[keep],
            examples={},  # indexed by window: a subset's would shift
        )


def _kl(target: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    return (xlogy(target, target) - target * log_q).sum(-1)


def _keep_examples(batch, target: torch.Tensor, found: dict[str, Any], psd: dict[str, list]) -> None:
    """The batch's windows' Welch spectra summed per recording, and the EEG of the first window of
    each target class not seen yet (a window without a target has none)."""
    eeg = batch["eeg"].float().numpy()
    freqs, power = welch(eeg, fs=SFREQ, nperseg=int(WELCH_SECONDS * SFREQ), axis=-1)
    found["psd_freqs"] = freqs
    for k, recording in enumerate(batch["recording_id"]):
        psd.setdefault(recording, []).append(power[k])
    # targets are class indices (-1: none) or vote distributions (all zero: none)
    if target.ndim == 2:
        classes = [c if float(t.sum()) > 0 else -1 for c, t in zip(target.argmax(-1).tolist(), target, strict=True)]
    else:
        classes = target.long().tolist()
    for k, c in enumerate(classes):
        if c >= 0 and c not in found["example_class"]:
            found["example_class"][c] = len(found["recording"]) + k
            found["examples"][len(found["recording"]) + k] = eeg[k].copy()


def _pass(model, loader, cfg, device) -> dict[str, list]:
    """One pass: logits, pooled embeddings, targets, sites, subjects and recordings of every window;
    the examples and spectra of ``_keep_examples``."""
    found: dict[str, Any] = {"logits": [], "pooled": [], "target": [], "site": [], "subject": [], "recording": []}
    found.update(examples={}, example_class={}, psd_freqs=None)
    psd: dict[str, list] = {}
    embeds = hasattr(model, "forward_features") and hasattr(model, "forward_head")
    with torch.no_grad():
        for batch in loader:
            inputs = inputs_for(model, batch, device)
            if embeds:
                features = model.forward_features(**inputs)
                found["logits"].append(model.forward_head(features).float().cpu())
                found["pooled"].append(features.pooled.float().cpu())
            else:
                found["logits"].append(model(**inputs).logits.float().cpu())
            found["target"].append(targets_of(batch, cfg, torch.device("cpu")))
            _keep_examples(batch, found["target"][-1], found, psd)
            found["site"] += batch["site_id"]
            found["subject"] += batch["subject_id"]
            found["recording"] += batch["recording_id"]
    found["psd"] = {recording: np.mean(spectra, axis=0) for recording, spectra in psd.items()}
    return found


def score_run(run_dir: Path, data: Any, batch_size: int, device: torch.device) -> Scored:
    """The run's held-out split (test where it has one, else validation) scored by its model at
    the model's fitted temperature; ConfigError naming the run and data where there is nothing to
    score or the task is not a classification."""
    cfg, run, model_dir = load_run(run_dir)
    if cfg.task == "regression":
        raise ConfigError(f"{run_dir}/run.json: task regression has no classes to report per site")
    split, groups = held_out(run, "auto")
    with quiet_transformers():  # no loading bar per scored run
        model = EEGFMModel.from_pretrained(model_dir).to(device).eval()
    by = "sites" if run["split_group"] == "site" else "subjects"
    section = dataclasses.replace(cfg.loader, batch_size=batch_size, token_budget=None, num_workers=0)
    filters = RecordFilter(tasks=(run["record_task"],), **{by: groups})
    config = loader_config(section, model.config.patch_size, filters=filters, train=False)
    loader = EEGLoader(data, config, rank=0, world_size=1, infinite=False)
    found = _pass(model, loader, cfg, device)
    if not found["logits"]:
        raise ConfigError(f"{run_dir}: none of the {split} split's {len(groups)} {by} has a window in {data}")
    logits = class_logits(torch.cat(found["logits"]), cfg)
    distribution, keep = losses.as_distribution(torch.cat(found["target"]), logits.shape[-1])
    temperature = float(getattr(model.config, "temperature", 1.0) or 1.0)
    keep_np = keep.numpy()
    kept_index = np.cumsum(keep_np) - 1  # a window's index among the kept
    id2label = model.config.id2label or {}
    classes = [str(id2label.get(c, id2label.get(str(c), c))) for c in range(logits.shape[-1])]
    return Scored(
        split=split,
        task=cfg.task,
        classes=classes,
        logits=(logits[keep].double() / temperature).numpy(),
        target=distribution[keep].double().numpy(),
        prior=np.asarray(run["prior"], dtype=np.float64),
        embeddings=torch.cat(found["pooled"])[keep].double().numpy() if found["pooled"] else None,
        sites=np.asarray(found["site"])[keep_np],
        subjects=np.asarray(found["subject"])[keep_np],
        temperature=temperature,
        recordings=np.asarray(found["recording"])[keep_np],
        examples={int(kept_index[i]): eeg for i, eeg in found["examples"].items() if keep_np[i]},
        psd_freqs=found["psd_freqs"],
        psd=found["psd"],
    )
