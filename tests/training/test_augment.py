"""training.augment: the augmentations, pure and seeded by their generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eegfm.contract.schema import N_CHANS
from eegfm.core.config import ConfigError
from eegfm.training import augment as aug
from eegfm.training.augment import AugmentConfig
from eegfm.training.data import LoaderConfig, RecordFilter
from tests.training.data.conftest import _epoch, _same_batch


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"crop_seconds": -1.0}, r"AugmentConfig.crop_seconds: expected a value in \[0.0, "),
        ({"crop_seconds": 0.001}, r"AugmentConfig.crop_seconds: expected 0 \(off\) or at least one sample \(1/256 s\)"),
        ({"channel_dropout": 1.0}, r"AugmentConfig.channel_dropout: expected a value in \[0.0, 1.0\)"),
        ({"amplitude_scale": (2.0, 1.0)}, "AugmentConfig.amplitude_scale: expected \\(low, high\\)"),
        ({"time_shift": 1.5}, "AugmentConfig.time_shift: expected an integer >= 0"),
    ],
)
def test_augment_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AugmentConfig(**kwargs)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def signals(records):
    eeg = torch.stack([torch.from_numpy(r.eeg.astype(np.float32)[:, :512]) for r in records[:8]])
    return eeg, torch.from_numpy(np.stack([r.channel_mask for r in records[:8]])).float()


def test_channel_dropout_zeroes_signal_and_mask(signals):
    eeg, mask = signals
    out, out_mask = aug.channel_dropout(eeg, mask, 0.5, _gen())
    dropped = (mask == 1) & (out_mask == 0)
    assert dropped.any() and (out[dropped] == 0).all()
    assert torch.equal(out[out_mask == 1], eeg[out_mask == 1]) and (out_mask <= mask).all()
    _, all_gone = aug.channel_dropout(eeg, mask, 0.999999, _gen())
    assert (all_gone.sum(1) == 1).all()  # one measured channel always survives


def test_time_shift_rolls_each_window_with_its_ecg(signals):
    eeg, _ = signals
    ecg = eeg[:, 0].clone()
    out, out_ecg = aug.time_shift(eeg, 50, _gen(), ecg=ecg)
    for i in range(len(eeg)):
        shifts = [s for s in range(-50, 51) if torch.equal(torch.roll(eeg[i], s, -1), out[i])]
        assert shifts and torch.equal(torch.roll(ecg[i], shifts[0], -1), out_ecg[i])


def test_random_crop_takes_crops_of_longer_windows_and_leaves_the_others_whole(signals):
    eeg, _ = signals  # 512 samples
    ecg = eeg[:, 3].clone()
    cropped, cropped_ecg = aug.random_crop(eeg, 412, _gen(), ecg=ecg)
    assert cropped.shape[-1] == cropped_ecg.shape[-1] == 412
    starts = [next(s for s in range(101) if torch.equal(eeg[i, :, s : s + 412], cropped[i])) for i in range(len(eeg))]
    assert len(set(starts)) > 1
    assert all(torch.equal(ecg[i, s : s + 412], cropped_ecg[i]) for i, s in enumerate(starts))
    for n_keep in (512, 2560):
        whole, whole_ecg = aug.random_crop(eeg, n_keep, _gen(), ecg=ecg)
        assert whole is eeg and whole_ecg is ecg
    # Through the config: seconds at the data contract's 256 Hz.
    config = AugmentConfig(crop_seconds=1.5)
    assert config.crop_samples == 384 and config.enabled
    batch = {"eeg": eeg, "channel_mask": torch.ones(len(eeg), 19)}
    assert aug.augment_batch(batch, config, _gen())["eeg"].shape[-1] == 384
    assert aug.augment_batch(batch, AugmentConfig(crop_seconds=10), _gen())["eeg"] is eeg


def test_the_cpu_tiny_fine_tuning_crops_fit_every_window_length():
    # Its 10 s crops are for HMS's 50 s windows; eegmat's 10 s windows (--task eegmat) stay whole.
    from eegfm.training.config import load_config

    config = AugmentConfig(**load_config("cpu-tiny", "finetune").loader.augment)
    for seconds, kept in ((50, 10), (10, 10), (4, 4)):
        eeg = torch.randn(2, N_CHANS, seconds * 256)
        batch = {"eeg": eeg, "channel_mask": torch.ones(2, N_CHANS)}
        assert aug.augment_batch(batch, config, _gen())["eeg"].shape[-1] == kept * 256


def test_amplitude_scale_and_noise(signals):
    eeg, _ = signals
    scaled = aug.amplitude_scale(eeg, 0.5, 2.0, _gen())
    gains = (scaled.flatten(1) / eeg.flatten(1)).nanmedian(1).values
    assert ((gains >= 0.5) & (gains <= 2.0)).all() and gains.std() > 0
    noisy = aug.gaussian_noise(eeg, 3.0, _gen())
    assert abs(float((noisy - eeg).std()) - 3.0) < 0.1
    assert torch.equal(aug.gaussian_noise(eeg, 3.0, _gen(1)), aug.gaussian_noise(eeg, 3.0, _gen(1)))


def _voted_batch(signals):
    eeg, mask = signals
    votes = torch.rand(len(eeg), 6, generator=_gen(5)) * 5
    has = torch.tensor([True] * 6 + [False] * 2)
    votes[~has] = 0
    targets = torch.where(has[:, None], votes / votes.sum(1, keepdim=True).clamp_min(1e-9), 0.0)
    return eeg, mask, targets, has


@pytest.mark.parametrize("mix", [aug.mixup, aug.cutmix])
def test_mixing_keeps_distributions_and_spares_unvoted(signals, mix):
    eeg, mask, targets, has = _voted_batch(signals)
    ecg = eeg[:, 1].clone()
    ecg[0] = float("nan")
    out = mix(eeg, targets, has, 0.4, _gen(), channel_mask=mask, ecg=ecg)
    assert torch.allclose(out.targets[has].sum(1), torch.ones(int(has.sum())))
    assert torch.equal(out.eeg[~has], eeg[~has]) and torch.equal(out.targets[~has], targets[~has])
    mixed = out.partner != torch.arange(len(eeg))
    assert mixed.any() and has[out.partner[has]].all()
    for i in torch.nonzero(mixed).flatten().tolist():
        p, w = int(out.partner[i]), float(out.weight[i])
        assert torch.allclose(out.targets[i], w * targets[i] + (1 - w) * targets[p], atol=1e-6)
        assert torch.equal(out.channel_mask[i], torch.minimum(mask[i], mask[p]))
        if mix is aug.cutmix:  # every sample comes from the window itself or its partner
            own = (out.eeg[i] == eeg[i]).all(0)
            assert (own | (out.eeg[i] == eeg[p]).all(0)).all() and abs(own.float().mean() - w) < 0.02
        assert torch.isnan(out.ecg[i]).all() == bool(torch.isnan(ecg[i]).all() or torch.isnan(ecg[p]).all())


@pytest.mark.parametrize("mix", [aug.mixup, aug.cutmix])
def test_mixing_mixes_the_spectrograms_log_power_like_the_targets(signals, mix):
    eeg, mask, targets, has = _voted_batch(signals)
    spectrogram = torch.rand(len(eeg), 400, 25, generator=_gen(3)) * 8
    spectrogram[1] = float("nan")  # a window without one
    out = mix(eeg, targets, has, 0.4, _gen(), channel_mask=mask)
    mixed = aug.mix_spectrogram(spectrogram, out.partner, out.weight)
    for i in range(len(eeg)):
        p, w = int(out.partner[i]), float(out.weight[i])
        if p == i:
            torch.testing.assert_close(mixed[i], spectrogram[i], rtol=0, atol=0, equal_nan=True)
        elif torch.isnan(spectrogram[i]).all() or torch.isnan(spectrogram[p]).all():
            assert torch.isnan(mixed[i]).all()  # absent where either source has none
        else:
            torch.testing.assert_close(mixed[i], w * spectrogram[i] + (1 - w) * spectrogram[p])
    batch = {"eeg": eeg, "channel_mask": mask, "targets": targets, "has_votes": has, "spectrogram": spectrogram}
    augmented = aug.augment_batch(batch, aug.AugmentConfig(mixup_alpha=0.4), _gen())
    changed = ~torch.isclose(augmented["spectrogram"], spectrogram, equal_nan=True)
    assert changed.any()  # augment_batch mixes it


def test_augment_batch_is_reproducible_from_its_generator(pipeline_output):
    batch = _epoch(pipeline_output, LoaderConfig(batch_size=6, num_workers=0, filters=RecordFilter(tasks=("hms6",))))[0]
    config = aug.AugmentConfig(
        channel_dropout=0.05, time_shift=128, amplitude_scale=(0.9, 1.1), mixup_alpha=0.4, cutmix_alpha=1.0
    )
    a, b = aug.augment_batch(batch, config, _gen(9)), aug.augment_batch(batch, config, _gen(9))
    assert _same_batch(a, b) and not torch.equal(a["eeg"], batch["eeg"])
    assert torch.allclose(a["targets"].sum(1), torch.ones(len(a["targets"])))
