"""model.eegnet_factored: braindecode's EEGNetv4 with its first block computed in factored order
gives the module's own outputs, gradients and running statistics on real eegmat windows, in
training and eval mode, step after step of training; odd shapes work; other modules are refused."""

from __future__ import annotations

import copy

import pytest
import torch
from braindecode.models import EEGNetv4

from eegfm.metrics.losses import soft_cross_entropy
from eegfm.model import eegnet_factored
from eegfm.model.eegnet import build_model, inputs


@pytest.fixture(scope="module")
def batch(eegmat_windows) -> torch.Tensor:
    """48 real five-second windows as EEGNet reads them: [48, 19, 640] at 128 Hz, uV / 10."""
    return inputs(eegmat_windows[:48].numpy())


def _pair(n_chans=19, n_times=640, drop_prob=0.0, seed=0):
    torch.manual_seed(seed)
    model = build_model(n_chans, n_times, 2, drop_prob)
    return model, copy.deepcopy(model)


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> None:
    scale = float(a.detach().abs().max()) + 1e-6
    assert float((a - b).abs().max()) <= rel * scale, (float((a - b).abs().max()), scale)


def test_training_mode_outputs_gradients_and_running_statistics_are_the_modules_own(batch):
    module, factored = _pair()
    tracked = int(factored.bnorm_temporal.num_batches_tracked)  # braindecode's build ran one batch
    targets = torch.softmax(torch.randn(len(batch), 2, generator=torch.Generator().manual_seed(1)), -1)
    out_module, out_factored = module(batch), eegnet_factored.forward(factored, batch)
    _close(out_module, out_factored, 1e-5)
    soft_cross_entropy(out_module, targets).backward()
    soft_cross_entropy(out_factored, targets).backward()
    gradients = dict(factored.named_parameters())
    for name, parameter in module.named_parameters():
        # the next batch norm removes any shift or scale of the block's outputs: the first batch
        # norm's own gradients are 0 but for rounding, both ways
        if not name.startswith("bnorm_temporal."):
            _close(parameter.grad, gradients[name].grad, 1e-3)
    for name, buffer in module.named_buffers():
        assert torch.allclose(buffer.double(), dict(factored.named_buffers())[name].double(), rtol=1e-5, atol=1e-7), (
            name
        )
    assert int(factored.bnorm_temporal.num_batches_tracked) == tracked + 1


def test_eval_mode_uses_the_running_statistics_and_changes_nothing(batch):
    module, factored = _pair()
    module(batch), eegnet_factored.forward(factored, batch)  # running statistics away from their start
    module.eval(), factored.eval()
    before = copy.deepcopy(factored.state_dict())
    with torch.no_grad():
        _close(module(batch), eegnet_factored.forward(factored, batch), 1e-5)
        # each window alone: the same logits as in the batch
        _close(eegnet_factored.forward(factored, batch[:1]), eegnet_factored.forward(factored, batch)[:1], 1e-5)
    assert all(torch.equal(value, factored.state_dict()[key]) for key, value in before.items())


def test_twenty_steps_of_training_with_dropout_track_the_module(batch):
    module, factored = _pair(drop_prob=0.25)
    targets = torch.nn.functional.one_hot(torch.arange(len(batch)) % 2, 2).float()
    for model, run in ((module, module), (factored, lambda x: eegnet_factored.forward(factored, x))):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        torch.manual_seed(5)  # the same dropout masks both ways: the same layers draw them in the same order
        for step in range(20):
            rows = torch.arange(step % 3, len(batch), 3)
            optimizer.zero_grad()
            soft_cross_entropy(run(batch[rows]), targets[rows]).backward()
            optimizer.step()
    trained = dict(factored.named_parameters())
    for name, value in module.named_parameters():
        # the first batch norm's gradients are rounding noise both ways (see above), which Adam
        # turns into full steps; the running means after it follow that drift
        if not name.startswith("bnorm_temporal."):
            assert float((value - trained[name]).abs().max()) <= 1e-4 * float(value.abs().max()), name
    module.eval(), factored.eval()
    with torch.no_grad():
        _close(module(batch), eegnet_factored.forward(factored, batch), 1e-2)
    # the max-norm constraint held: every spatial filter's weights have norm at most 1
    assert float(factored.conv_spatial.weight.flatten(1).norm(dim=1).max()) <= 1 + 1e-6


def test_other_shapes_give_the_modules_outputs():
    generator = torch.Generator().manual_seed(2)
    for n_chans, n_times in ((4, 257), (21, 1000)):
        module, factored = _pair(n_chans, n_times, seed=3)
        x = torch.randn(5, n_chans, n_times, generator=generator) * 2 + 0.3
        _close(module(x), eegnet_factored.forward(factored, x), 1e-5)
        assert torch.allclose(module.bnorm_temporal.running_var, factored.bnorm_temporal.running_var, rtol=1e-5)


def test_lagged_moments_are_the_sums_over_every_position_the_convolution_reads():
    x = torch.randn(3, 2, 50, generator=torch.Generator().manual_seed(4), dtype=torch.float64).float()
    taps, pad = 8, 4
    n_out = 50 + 2 * pad - taps + 1
    sums, lagged = eegnet_factored.lagged_moments(x, taps, pad, n_out)
    reads = torch.nn.functional.pad(x, (pad, pad)).double().unfold(2, taps, 1)[:, :, :n_out].reshape(-1, taps)
    assert torch.allclose(sums, reads.sum(0), atol=1e-9)
    assert torch.allclose(lagged, reads.T @ reads, rtol=1e-6, atol=1e-6)


def test_a_model_without_eegnets_first_block_or_a_wrong_input_is_refused(batch):
    with pytest.raises(ValueError, match="conv_temporal"):
        eegnet_factored.forward(torch.nn.Sequential(torch.nn.Linear(640, 2)), batch)
    model = EEGNetv4(n_chans=19, n_outputs=2, n_times=640, kernel_length=64)
    with pytest.raises(ValueError, match=r"\[N, C, T\].*\(48, 18, 640\)"):
        eegnet_factored.forward(model, batch[:, :18])
