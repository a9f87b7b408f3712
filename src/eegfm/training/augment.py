"""EEG batch augmentations: pure functions on the loader's batch tensors, every draw from the
``torch.Generator`` passed in (a CPU one the loader seeds per batch), so a resumed run augments
each batch as the uninterrupted one did.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
import torch

from eegfm.contract.schema import SFREQ
from eegfm.core.config import ConfigError, check_int, check_range


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations a batch gets (defaults: none): ``crop_seconds`` of each longer window,
    ``time_shift`` (samples), ``amplitude_scale`` (gain range), ``noise_std`` (µV),
    ``channel_dropout`` (probability per channel), then ``mixup_alpha`` or ``cutmix_alpha`` (one of
    them per batch) between windows with expert votes."""

    channel_dropout: float = 0.0
    crop_seconds: float = 0.0
    time_shift: int = 0
    amplitude_scale: tuple[float, float] = (1.0, 1.0)
    noise_std: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0

    def __post_init__(self) -> None:
        check_range("AugmentConfig.channel_dropout", self.channel_dropout, 0.0, 1.0, high_inclusive=False)
        check_range("AugmentConfig.crop_seconds", self.crop_seconds, 0.0)
        if self.crop_seconds and self.crop_samples < 1:
            raise ConfigError(
                f"AugmentConfig.crop_seconds: expected 0 (off) or at least one sample "
                f"(1/{SFREQ:g} s); got {self.crop_seconds!r}"
            )
        check_int("AugmentConfig.time_shift", self.time_shift, 0)
        scale = self.amplitude_scale
        if (
            not isinstance(scale, (tuple, list))
            or len(scale) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale)
            or not 0 < scale[0] <= scale[1]
        ):
            raise ConfigError(
                f"AugmentConfig.amplitude_scale: expected (low, high) with 0 < low <= high; got {scale!r}"
            )
        object.__setattr__(self, "amplitude_scale", (float(scale[0]), float(scale[1])))
        check_range("AugmentConfig.noise_std", self.noise_std, 0.0)
        check_range("AugmentConfig.mixup_alpha", self.mixup_alpha, 0.0)
        check_range("AugmentConfig.cutmix_alpha", self.cutmix_alpha, 0.0)

    @property
    def crop_samples(self) -> int:
        return round(self.crop_seconds * SFREQ)

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig()


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def channel_dropout(
    eeg: torch.Tensor, channel_mask: torch.Tensor, p: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero each measured channel with probability ``p`` and set its mask to 0; one measured
    channel per window always survives."""
    measured = channel_mask > 0
    draw = _uniform(tuple(channel_mask.shape), generator, channel_mask.device)
    drop = (draw < p) & measured
    emptied = measured.any(1) & ~(measured & ~drop).any(1)
    if emptied.any():  # keep the measured channel with the largest draw
        keep = torch.where(measured, draw, torch.full_like(draw, -1.0)).argmax(1)
        drop[emptied, keep[emptied]] = False
    keep_mask = (~drop).to(eeg.dtype)
    return eeg * keep_mask.unsqueeze(-1), channel_mask * keep_mask.to(channel_mask.dtype)


def _take_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, ..., index[b, t]]``: per-window gather along the last (time) axis."""
    index = index.to(x.device).view(index.shape[0], *([1] * (x.dim() - 2)), index.shape[1])
    return torch.gather(x, -1, index.expand(*x.shape[:-1], index.shape[-1]))


def random_crop(
    eeg: torch.Tensor, n_keep: int, generator: torch.Generator, *, ecg: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A random crop of ``n_keep`` samples of each window, ECG cropped with its window; windows
    of ``n_keep`` samples or fewer are returned whole (and nothing is drawn)."""
    check_int("n_keep", n_keep, 1)
    batch, n_times = eeg.shape[0], eeg.shape[-1]
    if n_keep >= n_times:
        return eeg, ecg
    starts = torch.randint(0, n_times - n_keep + 1, (batch, 1), generator=generator, device=generator.device)
    index = torch.arange(n_keep, device=generator.device) + starts
    return _take_time(eeg, index), None if ecg is None else _take_time(ecg, index)


def time_shift(
    eeg: torch.Tensor, max_shift: int, generator: torch.Generator, *, ecg: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Roll each window by a random s in [-max_shift, max_shift] samples (length unchanged);
    ECG moves with its window."""
    batch, n_times = eeg.shape[0], eeg.shape[-1]
    if max_shift == 0:
        return eeg, ecg
    shifts = torch.randint(-max_shift, max_shift + 1, (batch, 1), generator=generator, device=generator.device)
    index = (torch.arange(n_times, device=generator.device) - shifts) % n_times
    return _take_time(eeg, index), None if ecg is None else _take_time(ecg, index)


def amplitude_scale(eeg: torch.Tensor, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """Multiply each window by a gain drawn uniformly from [low, high]: sites differ in gain."""
    gain = low + (high - low) * _uniform((eeg.shape[0],), generator, eeg.device)
    return eeg * gain.to(eeg.dtype).view(-1, *([1] * (eeg.dim() - 1)))


def gaussian_noise(eeg: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Add white gaussian noise of ``std`` µV (amplifier and electrode noise)."""
    noise = torch.randn(eeg.shape, generator=generator, device=generator.device, dtype=eeg.dtype)
    return eeg + std * noise.to(eeg.device)


class Mixed(NamedTuple):
    """The result of :func:`mixup` / :func:`cutmix`: mixed tensors and who was mixed with whom."""

    eeg: torch.Tensor
    targets: torch.Tensor
    channel_mask: torch.Tensor | None
    ecg: torch.Tensor | None
    partner: torch.Tensor  # (B,) index of the other window; a row's own index where unmixed
    weight: torch.Tensor  # (B,) fraction of the window (and its target) that is its own


def _partners(has_votes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random permutation among the windows with votes; the others (zero targets) keep themselves."""
    partner = torch.arange(has_votes.shape[0])
    voted = torch.nonzero(has_votes.cpu(), as_tuple=True)[0]
    partner[voted] = voted[torch.randperm(len(voted), generator=generator, device=generator.device).cpu()]
    return partner


def _beta(alpha: float, size: int, generator: torch.Generator) -> torch.Tensor:
    """Beta(alpha, alpha) draws; torch's Beta takes no generator, so seed numpy from ours."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size)).float()


def _mixed(
    eeg: torch.Tensor,
    targets: torch.Tensor,
    channel_mask: torch.Tensor | None,
    ecg: torch.Tensor | None,
    mixed_ecg: torch.Tensor | None,
    partner: torch.Tensor,
    weight: torch.Tensor,
) -> Mixed:
    """Targets mixed by ``weight``; a mixed window is measured where both sources are, and has ECG
    only if both have one."""
    wt = weight.to(device=targets.device, dtype=targets.dtype).view(-1, 1)
    mixed_targets = wt * targets + (1 - wt) * targets[partner.to(targets.device)]
    if channel_mask is not None:
        channel_mask = torch.minimum(channel_mask, channel_mask[partner.to(channel_mask.device)])
    if ecg is not None and mixed_ecg is not None:
        absent = torch.isnan(ecg).all(1)
        absent = absent | absent[partner.to(ecg.device)]
        mixed_ecg = torch.where(absent.unsqueeze(1), torch.full_like(mixed_ecg, float("nan")), mixed_ecg)
    return Mixed(eeg, mixed_targets, channel_mask, mixed_ecg, partner, weight)


def mixup(
    eeg: torch.Tensor,
    targets: torch.Tensor,
    has_votes: torch.Tensor,
    alpha: float,
    generator: torch.Generator,
    *,
    channel_mask: torch.Tensor | None = None,
    ecg: torch.Tensor | None = None,
) -> Mixed:
    """Convex combinations ``w x_i + (1 - w) x_j`` of windows with votes and of their vote
    distributions, ``w ~ Beta(alpha, alpha)`` per window."""
    partner = _partners(has_votes, generator)
    weight = _beta(alpha, eeg.shape[0], generator)
    weight = torch.where(partner == torch.arange(len(partner)), torch.ones_like(weight), weight)
    w = weight.to(device=eeg.device, dtype=eeg.dtype)
    p = partner.to(eeg.device)
    mixed_eeg = w.view(-1, 1, 1) * eeg + (1 - w.view(-1, 1, 1)) * eeg[p]
    mixed_ecg = None if ecg is None else w.view(-1, 1) * ecg + (1 - w.view(-1, 1)) * ecg[p]
    return _mixed(mixed_eeg, targets, channel_mask, ecg, mixed_ecg, partner, weight)


def cutmix(
    eeg: torch.Tensor,
    targets: torch.Tensor,
    has_votes: torch.Tensor,
    alpha: float,
    generator: torch.Generator,
    *,
    channel_mask: torch.Tensor | None = None,
    ecg: torch.Tensor | None = None,
) -> Mixed:
    """Replace a random segment of ``1 - w`` of each window (``w ~ Beta(alpha, alpha)``, whole
    samples) by the same segment of another; targets mix by the exact fraction kept."""
    batch, n_times = eeg.shape[0], eeg.shape[-1]
    partner = _partners(has_votes, generator)
    lengths = torch.round((1 - _beta(alpha, batch, generator)) * n_times).long()
    lengths = torch.where(partner == torch.arange(batch), torch.zeros_like(lengths), lengths)
    starts = (_uniform((batch,), generator, torch.device("cpu")) * (n_times - lengths + 1)).long()
    starts = torch.minimum(starts, n_times - lengths)
    t = torch.arange(n_times)
    cut = (t >= starts.unsqueeze(1)) & (t < (starts + lengths).unsqueeze(1))  # (B, n_times)
    weight = 1 - lengths.float() / n_times
    mixed_eeg = torch.where(cut.to(eeg.device).unsqueeze(1), eeg[partner.to(eeg.device)], eeg)
    mixed_ecg = None if ecg is None else torch.where(cut.to(ecg.device), ecg[partner.to(ecg.device)], ecg)
    return _mixed(mixed_eeg, targets, channel_mask, ecg, mixed_ecg, partner, weight)


def mix_spectrogram(spectrogram: torch.Tensor, partner: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A mixed batch's spectrograms (B, 400, F) of log power: each row ``w`` its own and ``1 - w``
    its partner's (after cutmix too: its frames outlast the cut, so they mix by the fraction kept,
    like the targets); NaN where either source has none."""
    w = weight.to(device=spectrogram.device, dtype=spectrogram.dtype).view(-1, 1, 1)
    own = partner.to(spectrogram.device) == torch.arange(len(partner), device=spectrogram.device)
    mixed = w * spectrogram + (1 - w) * spectrogram[partner.to(spectrogram.device)]
    return torch.where(own.view(-1, 1, 1), spectrogram, mixed)


def augment_batch(batch: dict[str, Any], config: AugmentConfig, generator: torch.Generator) -> dict[str, Any]:
    """A new loader batch with ``config`` applied: crop, time shift, amplitude, noise, channel
    dropout, then mixup/cutmix, which mixes ``targets`` only (``votes``, ``label`` and the ids keep
    describing the window's own, dominant source)."""
    out = dict(batch)
    eeg, ecg = out["eeg"], out.get("ecg")
    if config.crop_seconds:
        eeg, ecg = random_crop(eeg, config.crop_samples, generator, ecg=ecg)
    if config.time_shift:
        eeg, ecg = time_shift(eeg, config.time_shift, generator, ecg=ecg)
    if config.amplitude_scale != (1.0, 1.0):
        eeg = amplitude_scale(eeg, *config.amplitude_scale, generator)
    if config.noise_std:
        eeg = gaussian_noise(eeg, config.noise_std, generator)
    mask = out["channel_mask"]
    if config.channel_dropout:
        eeg, mask = channel_dropout(eeg, mask, config.channel_dropout, generator)
    mixers = [(f, a) for f, a in ((mixup, config.mixup_alpha), (cutmix, config.cutmix_alpha)) if a > 0]
    if mixers:
        choice = int(torch.randint(len(mixers), (1,), generator=generator, device=generator.device))
        mix, alpha = mixers[choice]
        mixed = mix(eeg, out["targets"], out["has_votes"], alpha, generator, channel_mask=mask, ecg=ecg)
        eeg, mask, ecg, out["targets"] = mixed.eeg, mixed.channel_mask, mixed.ecg, mixed.targets
        if "spectrogram" in out:
            out["spectrogram"] = mix_spectrogram(out["spectrogram"], mixed.partner, mixed.weight)
    out["eeg"], out["channel_mask"] = eeg, mask
    if ecg is not None:
        out["ecg"] = ecg
    return out
