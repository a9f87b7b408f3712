"""eegfm's recipe on a labeled benchmark, its network stacked with a spectral readout: the readout
fitted here, read by the ``eegfm``, ``eegfm_ensemble``, ``spectral_readout`` and ``eegnet_stack``
rows (``benchmark.rows``; the network alone is the ``eegfm_model`` row).

Two models of one window, fused:

- the fine-tuned eegfm network of a seed (the ``eegfm_model`` row's run, or the seeds' mean);
- the *readout*: a class-balanced logistic regression on the frozen pretrained encoder's window
  embedding (``pooled``) beside the window's log band powers (``model.spectral_features``),
  and, where validation prefers them, each band's spatial covariance in the tangent space of the
  training windows' mean (``tangent_space``, under either of its metrics). The feature set and C are
  chosen by validation log loss.

The fusion (``model.fused.fuse``) is the normalised weighted geometric mean of the two class
distributions (a weighted mean of log-probabilities); the network's share is one of
:data:`FUSION_SHARES`, chosen by validation log loss (:func:`choose_share`). Why both: on eegmat the
fine-tuned model ranks most people's windows well and misses one validation subject whose rest the
band powers read correctly; on a simulated group study the difference between the groups is a
spatially coherent delta source that neither the encoder's embedding nor per-channel powers show
and the covariances do (docs/model-quality.md).

Every input is one window's own (the covariances' reference point is the training windows'): no
statistic spans a held-out subject's windows. The regression is fitted on the training windows
alone; validation chooses its features and C; test never chooses anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from eegfm.evaluation.comparison import baselines, tangent_space
from eegfm.evaluation.comparison.windows import WindowSet, computed_once
from eegfm.model.fused import Readout, encoder_embedding, fuse
from eegfm.model.linear_fit import log_loss
from eegfm.model.spectral_features import band_power_features

# The network's shares of the fusion validation chooses between, smallest first: a quarter (the
# readout's three times as large: it is a convex fit, the network the member that moves with its
# seed and can learn the training people; on eegmat and a simulated group study 0.25 was at or
# above equal shares on every validation metric while the network's head was chosen by the
# training people) up to all of it, where the network alone predicts the validation people best
# (docs/model-quality.md). Ties go to the smaller share.
FUSION_SHARES: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
# Log losses closer than this (nats a window) are ties: a validation set every share predicts
# perfectly (a simulated group study: 0.00003 at 0.25, under 0.0000005 from 0.5 on) says nothing
# about the share, and float rounding would otherwise choose it.
SHARE_TIE = 1e-3
# The readout's candidate feature sets, smaller first: validation log loss picks one. The
# covariances replaced each band's inter-channel correlations (docs/model-quality.md): they hold the
# same co-variation and each channel's power, and read a simulated group study better.
READOUT_FEATURES: Mapping[str, tuple[str, ...]] = {
    "embedding+powers": ("embedding", "powers"),
    **{f"embedding+powers+covariances ({m})": ("embedding", "powers", m) for m in tangent_space.METRICS},
}


def spectral_readout(
    encoder_dir: Path,
    train: WindowSet,
    n_classes: int,
    validation: WindowSet,
    covariances: Callable[[WindowSet], np.ndarray] | None = None,
):
    """The readout (module docstring), fitted on ``train``, its feature set and C chosen on
    ``validation``; returns ``(Readout, {"features": name, "C": C})``. Each part of a window set's
    features is computed once, however many candidate sets read it; ``covariances``: a
    ``tangent_space.band_covariances_of`` reader the tangent-space baseline shares (default: a new one)."""
    covariances = covariances or tangent_space.band_covariances_of()
    maps = {m: tangent_space.tangent_space(train, m, covariances) for m in tangent_space.METRICS}
    embed = encoder_embedding(encoder_dir)
    compute: dict[str, Callable[[WindowSet], np.ndarray]] = {
        "embedding": computed_once(lambda windows: embed(windows.eeg, windows.channel_mask)),
        "powers": computed_once(lambda windows: band_power_features(windows.eeg)),
        **{m: computed_once(featurize) for m, (_, featurize) in maps.items()},
    }
    featurizers = {  # concatenated in the order Readout.probabilities_of reads them
        name: (lambda windows, names=names: np.concatenate([compute[n](windows) for n in names], axis=1))
        for name, names in READOUT_FEATURES.items()
    }
    name, fit = baselines.lowest_validation_loss(featurizers, train, n_classes, validation)
    features = READOUT_FEATURES[name]
    tangent = {m: maps[m][0] for m in features if m in maps}
    readout = Readout(features, fit.linear, tangent, Path(encoder_dir))
    return readout, {"features": name, "C": fit.c}


def choose_share(
    networks: list[np.ndarray], readout: np.ndarray, target: np.ndarray, balanced: bool
) -> tuple[float, dict[float, float]]:
    """The network's share of :data:`FUSION_SHARES` whose fusion with ``readout`` [N, C] has the
    lowest validation log loss against ``target`` [N, C] (distributions; ``balanced``: each
    class's mean, as the fits weigh them), the mean over ``networks`` (each seed's [N, C]): the
    smallest share within :data:`SHARE_TIE` of the lowest. Also every share's loss: the choice's spread."""
    losses = {
        share: float(
            np.mean([log_loss(fuse([net, readout], [share, 1.0 - share]), target, balanced) for net in networks])
        )
        for share in FUSION_SHARES
    }
    lowest = min(losses.values())
    return next(share for share in FUSION_SHARES if losses[share] <= lowest + SHARE_TIE), losses
