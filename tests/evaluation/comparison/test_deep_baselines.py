"""The EEGNet baseline on real eegmat windows of the published split: probabilities of the right
shape, the recipe of lowest validation loss, the same model for the same seed, the caller's random
state untouched, no validation window in any gradient step (a few subjects, a short budget); and,
trained on every shared training subject with the full recipe, above chance on the validation
subjects (slow)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from eegfm.evaluation.comparison import deep_baselines
from eegfm.evaluation.comparison.labeled import metrics_of
from eegfm.evaluation.comparison.preprocessing import benchmark_key, preprocess_windows
from eegfm.evaluation.comparison.windows import WindowSet, load_windows
from tests.evaluation.comparison.test_eegmat import eegmat_subset

SUBJECTS = ("00", "01", "28")  # two training subjects, one validation subject
# Two settings of the grid's shape: the mechanics of choosing one, at half the default grid's cost
SHORT_GRID = {"lr": (1e-3,), "drop_prob": (0.25, 0.5)}


def _windows(shared, base, subjects) -> WindowSet:
    recordings = str(eegmat_subset(shared, base / "recordings", subjects))
    data = preprocess_windows([recordings], base / "data", benchmark_key(base), "eegmat")
    return load_windows(data, "eegmat_rest_task")


def _rows(windows: WindowSet) -> set[bytes]:
    """Each window's network input as bytes: a batch row is found among them exactly."""
    return {row.numpy().tobytes() for row in deep_baselines.inputs(windows)}


@pytest.fixture(scope="module")
def windows(shared_data, tmp_path_factory) -> WindowSet:
    return _windows(shared_data, tmp_path_factory.mktemp("eegnet"), SUBJECTS)


@contextlib.contextmanager
def short_budget():
    """The recipe's mechanics at a few epochs: what these tests check does not need a good model.
    A context, not a module fixture: the slow test in this module trains with the full recipe."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(deep_baselines, "MAX_EPOCHS", 3)
        patch.setattr(deep_baselines, "MIN_EPOCHS", 1)
        patch.setattr(deep_baselines, "PATIENCE", 1)
        yield


@pytest.fixture(scope="module")
def fitted(windows):
    """One fit of :data:`SHORT_GRID`; every training batch's rows and the caller's RNG state recorded."""
    batches: list[torch.Tensor] = []
    original = deep_baselines.train_step

    def recording_step(model, optimizer, x, y, class_weights):
        batches.append(x.clone())
        return original(model, optimizer, x, y, class_weights)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as conftest's one_thread: two threads on a busy two-core machine are slower
    rng_before = torch.get_rng_state()
    with short_budget(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(deep_baselines, "train_step", recording_step)
        fit = deep_baselines.eegnet(windows.of_split("train"), windows.of_split("dev"), 2, seed=0, grid=SHORT_GRID)
    rng_moved = not torch.equal(rng_before, torch.get_rng_state())
    torch.set_num_threads(threads)
    return fit, fit.record, batches, rng_moved


def test_predictions_are_probabilities_of_every_window(windows, fitted):
    predict, _, _, rng_moved = fitted
    probs = predict(windows)
    assert probs.shape == (len(windows), 2) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    assert predict(windows.where(np.zeros(len(windows), bool))).shape == (0, 2)
    # one window alone is predicted as in the batch: nothing spans windows
    np.testing.assert_allclose(predict(windows.where(np.arange(len(windows)) == 5))[0], probs[5], atol=1e-6)
    assert not rng_moved  # the caller's random stream is as it was


def test_the_recipe_kept_is_the_lowest_validation_loss_of_the_grid(fitted):
    fit, settings, _, _ = fitted
    grid = SHORT_GRID
    assert [(s["lr"], s["drop_prob"]) for s in settings["grid"]] == [
        (lr, p) for lr in grid["lr"] for p in grid["drop_prob"]
    ]
    best = min(settings["grid"], key=lambda s: s["val_loss"])
    assert (settings["lr"], settings["drop_prob"], settings["epoch"]) == (best["lr"], best["drop_prob"], best["epoch"])
    assert settings["val_loss"] == best["val_loss"] and 1 <= settings["epoch"] <= 3
    assert settings["fixed"]["sfreq"] == 128 and settings["fixed"]["max_epochs"] == 3
    assert fit.settings == {"n_chans": 19, "n_times": 640, "drop_prob": settings["drop_prob"]}


def test_no_validation_window_reaches_a_gradient_step(windows, fitted):
    *_, batches, _ = fitted
    train_rows, dev_rows = _rows(windows.of_split("train")), _rows(windows.of_split("dev"))
    assert batches and not train_rows & dev_rows
    stepped = {row.numpy().tobytes() for batch in batches for row in batch}
    assert stepped == train_rows  # every training window, and nothing else


def test_the_same_seed_gives_the_same_model(windows):
    """Two fits from seed 0 predict identically; seed 1 draws another model."""
    train, dev = windows.of_split("train"), windows.of_split("dev")
    grid = {"lr": (1e-3,), "drop_prob": (0.25,)}
    with short_budget():
        first, second, other = (deep_baselines.eegnet(train, dev, 2, seed=s, grid=grid)(dev) for s in (0, 0, 1))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_a_saved_fit_is_reused_only_for_the_same_windows_and_recipe(windows, tmp_path, caplog):
    """A rerun loads the saved network (no training step); another seed or a torn file fits anew."""
    train, dev = windows.of_split("train"), windows.of_split("dev")
    grid = {"lr": (1e-3,), "drop_prob": (0.25,)}
    steps: list[int] = []
    original = deep_baselines.train_step

    def counting_step(*args):
        steps.append(1)
        return original(*args)

    def fit(seed: int):
        return deep_baselines.eegnet(train, dev, 2, seed=seed, grid=grid, cache=tmp_path / "baselines")

    saved = tmp_path / "baselines" / "eegnet-seed0.pt"  # one file per seed
    with short_budget(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(deep_baselines, "train_step", counting_step)
        first = fit(0)
        fitted_steps = len(steps)
        assert saved.is_file()
        second = fit(0)
        assert fitted_steps > 0 and len(steps) == fitted_steps  # loaded, not trained
        np.testing.assert_array_equal(first(dev), second(dev))
        assert second.record == first.record and second.settings == first.settings
        other = fit(1)  # another seed: another fit, saved beside seed 0's
        assert len(steps) > fitted_steps and not np.array_equal(other(dev), first(dev))
        assert (tmp_path / "baselines" / "eegnet-seed1.pt").is_file()
        before = len(steps)
        np.testing.assert_array_equal(fit(0)(dev), first(dev))
        assert len(steps) == before  # seed 0's saved fit is still there, and still used
        saved.write_bytes(b"torn")
        with caplog.at_level("WARNING"):
            refit = fit(0)
        assert len(steps) == before + fitted_steps and "is not a usable saved fit" in caplog.text
        np.testing.assert_array_equal(refit(dev), first(dev))  # the same seed trains the same network


def test_it_needs_training_and_validation_windows(windows):
    with pytest.raises(ValueError, match="validation windows"):
        deep_baselines.eegnet(windows.of_split("train"), windows.of_split("eval"), 2)


def test_inputs_are_each_window_at_128_hz_over_a_fixed_scale():
    t = np.arange(1280) / 256.0
    eeg = np.tile(10 * np.sin(2 * np.pi * 10 * t), (2, 19, 1)).astype(np.float32)  # 10 Hz, 10 uV
    eeg[1] *= 3  # a louder window does not change its neighbour's input
    fields = {"channel_mask": np.ones((2, 19)), "label": np.zeros(2, int), "votes": np.zeros((2, 2))}
    names = {name: np.array(["s", "s"]) for name in ("subject", "site", "recording", "split")}
    x = deep_baselines.inputs(WindowSet(eeg=eeg, **fields, **names))
    assert x.shape == (2, 19, 640) and x.dtype == torch.float32
    assert float(x[0, 0, 100:540].abs().max()) == pytest.approx(1.0, abs=0.02)  # 10 uV / SCALE_UV
    np.testing.assert_allclose(x[1].numpy(), 3 * x[0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_trained_on_every_shared_training_subject_it_beats_chance(shared_data, tmp_path):
    """The full recipe (about 3 minutes on two cores), 00-27 training, 28-31 validation."""
    subjects = sorted({path.name[7:9] for path in (shared_data / "eegmat").glob("Subject*_1.edf")})
    windows = _windows(shared_data, tmp_path, subjects)
    train, dev = windows.of_split("train"), windows.of_split("dev")
    fit = deep_baselines.eegnet(train, dev, 2)
    prior = np.bincount(train.label, minlength=2) / len(train)
    metrics = metrics_of(fit(dev), dev.label, prior)
    # 0.80 AUROC and 0.73 balanced accuracy when measured (docs/evaluation.md); chance is 0.5
    assert metrics["auroc"] > 0.7 and metrics["balanced_accuracy"] > 0.6, (metrics, fit.record)


def test_the_first_seed_chooses_the_setting_the_other_seeds_train(windows, tmp_path):
    """The run's EEGNets: the grid on the first seed, its chosen setting alone on the others, each
    seed stopping at its own epoch (``row_fits.Context.eegnets``)."""
    from eegfm.evaluation.comparison.row_fits import Context

    context = Context(windows, ("arithmetic", "rest"), tmp_path, (0, 1), 5.0, eegnet_max_epochs=2)
    with short_budget():
        first, second = context.eegnets
    assert len(first.record["grid"]) == len(deep_baselines.GRID["lr"]) * len(deep_baselines.GRID["drop_prob"])
    [tried] = second.record["grid"]
    assert {k: tried[k] for k in ("lr", "drop_prob")} == {k: first.record[k] for k in ("lr", "drop_prob")}
    assert (tmp_path / "baselines" / "eegnet-seed1.pt").is_file()


def test_training_taken_on_in_steps_ends_where_one_loop_ends(windows, tmp_path):
    """A :class:`Training` handed on (as a job in another process gets it) gives the same weights,
    bit for bit, as the same epochs in one go."""
    train, dev = (deep_baselines.Data.of(windows.of_split(s), 2) for s in ("train", "dev"))
    inputs = deep_baselines.save_inputs(train, dev, tmp_path / "inputs.pt")
    settings = {"lr": 1e-3, "drop_prob": 0.25, "max_epochs": 3}
    rng_before = torch.get_rng_state()
    with short_budget():
        whole = deep_baselines.train_until(deep_baselines.Training(settings, 0), inputs, 3)
        part = deep_baselines.train_until(deep_baselines.Training(settings, 0), inputs, 1)
        part = deep_baselines.train_until(part, inputs, 3)
    assert torch.equal(rng_before, torch.get_rng_state())
    assert (whole.epoch, whole.best_epoch, whole.best_loss) == (part.epoch, part.best_epoch, part.best_loss)
    for name, tensor in whole.state["model"].items():
        assert torch.equal(tensor, part.state["model"][name]), name


def test_the_grid_search_cuts_the_worse_half_at_the_first_rung(windows):
    """Successive halving: every setting trains to MIN_EPOCHS; only the better half by validation
    loss trains on, and the choice is the lowest loss of all."""
    with short_budget(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(deep_baselines, "MAX_EPOCHS", 4)
        patch.setattr(deep_baselines, "PATIENCE", 4)
        fit = deep_baselines.eegnet(windows.of_split("train"), windows.of_split("dev"), 2, grid=deep_baselines.GRID)
    tried = fit.record["grid"]
    assert len(tried) == 4 and sorted(t["epochs_trained"] for t in tried) == [1, 1, 4, 4]
    cut = [t for t in tried if t["epochs_trained"] == 1]
    kept = [t for t in tried if t["epochs_trained"] == 4]
    # kept on a loss at the cut no higher than any cut one's, which their later epochs only lowered
    assert max(t["val_loss"] for t in kept) <= min(t["val_loss"] for t in cut)
    assert fit.record["val_loss"] == min(t["val_loss"] for t in tried)


def test_fits_side_by_side_in_worker_processes_equal_the_fits_in_this_process(windows, tmp_path):
    """Two workers of one thread each (``core.job_pool``) give the networks of one thread here,
    driven from this thread or from a thread beside it (which leaves torch's random state alone)."""
    from eegfm.core.job_pool import JobPool, Plan

    train, dev = windows.of_split("train"), windows.of_split("dev")
    grid = {"lr": (1e-3,), "drop_prob": (0.25, 0.5), "max_epochs": (2,)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = [fit.network() for fit in deep_baselines.chosen_weights(train, dev, 2, (0, 1), grid)]
        with JobPool(Plan(2, 1)) as pool:
            fits = deep_baselines.chosen_weights(train, dev, 2, (0, 1), grid, cache=tmp_path / "b", pool=pool)
            apart = [fit.network() for fit in fits]
            state = torch.random.get_rng_state()
            args = (train, dev, 2, (0, 1), grid, tmp_path / "c", pool)
            weights = pool.beside(deep_baselines.chosen_weights, *args, name="EEGNet").result()
            assert torch.equal(torch.random.get_rng_state(), state)  # a thread beside the command draws nothing
        driven = [fit.network() for fit in weights]
    finally:
        torch.set_num_threads(threads)
    for one, other, third in zip(here, apart, driven, strict=True):
        assert one.record == other.record == third.record
        np.testing.assert_array_equal(one(dev), other(dev))
        np.testing.assert_array_equal(one(dev), third(dev))
    assert len(apart[1].record["grid"]) == 1 and (tmp_path / "b" / "eegnet-seed1.pt").is_file()
