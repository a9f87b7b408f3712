"""A fine-tuned model on its run's held-out windows, read once: per window the class logits,
the encoder's pooled embedding, the target, site and subject, and the per-window KL and top-class
hit the report's subject bootstrap averages."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import xlogy

from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger
from eegfm.evaluation.robustness import held_out, load_run
from eegfm.metrics import losses
from eegfm.metrics.classification import class_logits
from eegfm.model.architectures import quiet_transformers
from eegfm.model.modeling import EEGFMModel
from eegfm.training.data import EEGLoader, RecordFilter
from eegfm.training.finetune.objective import inputs_for, targets_of
from eegfm.training.steps import loader_config

log = get_logger(__name__)


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
        )


def _kl(target: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    return (xlogy(target, target) - target * log_q).sum(-1)


def _pass(model, loader, cfg, device) -> dict[str, list]:
    """One pass: logits, pooled embeddings, targets, sites and subjects of every window."""
    found: dict[str, list] = {"logits": [], "pooled": [], "target": [], "site": [], "subject": []}
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
            found["site"] += batch["site_id"]
            found["subject"] += batch["subject_id"]
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
    )
