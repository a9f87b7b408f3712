"""EEGNet's logits with its first block computed in a cheaper order: the same network, its
parameters, buffers and state dict braindecode's ``EEGNetv4``'s, its outputs and gradients
equal to the module's own up to float rounding.

EEGNet's first block is a temporal convolution of each electrode (F1 filters of K taps, one input
channel), a batch norm per filter, and a depthwise spatial convolution (D weightings of the C
electrodes per filter). Called directly, the module fills an [N, F1, C, T] tensor three times
over and back: 25 MB for a batch of 64 five-second windows, three quarters of a training step
on CPU. Every piece is linear per filter, so the order can change:

- the spatial weighting first (``z = w_spatial @ x``, [N, F1 * D, T]), then each weighted series
  filtered by its filter's taps, by FFT: about 7 times fewer operations and no large tensor;
- batch norm's affine map commutes with the spatial sum; its batch statistics are quadratic
  forms of the taps: the mean of filter f's output is ``w_f . s / n`` and its second moment
  ``w_f R w_f / n``, where ``s[k]`` and ``R[k, l]`` (:func:`lagged_moments`) are the sum and
  lagged products of the zero-padded input over every position the convolution reads, a
  constant of the batch. Gradients reach the taps through those forms exactly as through the
  module's batch norm; the running statistics are updated as ``BatchNorm2d`` updates them.

The spatial convolution's max-norm constraint (braindecode's ``Conv2dWithConstraint``: each
output's weights renormed to norm at most 1 before every call) is applied as the module applies
it. The layers after the block are the module's own, called in order. ``benchmarks/eegnet_step.py``
times a training step both ways.
"""

from __future__ import annotations

import scipy.fft
import torch
import torch.nn.functional as F
from torch import nn

FIRST_BLOCK = ("conv_temporal", "bnorm_temporal", "conv_spatial")


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model``'s output for ``x`` [N, C, T] (what ``model(x)`` returns), in training or eval mode
    as ``model`` is; a training-mode call updates the first batch norm's running statistics as
    the module's own call would. ``model``: a braindecode ``EEGNetv4``."""
    layers = dict(model.named_children())
    _check(layers, x)
    hidden = _first_block(*(layers[name] for name in FIRST_BLOCK), x)
    after = list(layers)[list(layers).index(FIRST_BLOCK[-1]) + 1 :]
    for name in after:
        hidden = layers[name](hidden)
    return hidden


def _check(layers: dict[str, nn.Module], x: torch.Tensor) -> None:
    missing = [name for name in FIRST_BLOCK if name not in layers]
    if missing:
        raise ValueError(f"eegnet_factored: the model has no {missing}; expected braindecode's EEGNetv4")
    temporal, norm, spatial = (layers[name] for name in FIRST_BLOCK)
    plain = (
        temporal.in_channels == 1 and temporal.bias is None and temporal.stride == (1, 1)
        and temporal.dilation == (1, 1) and temporal.kernel_size[0] == 1 and temporal.padding[0] == 0
        and spatial.bias is None and spatial.groups == temporal.out_channels and spatial.stride == (1, 1)
        and spatial.padding == (0, 0) and spatial.kernel_size == (x.shape[1], 1)
        and norm.affine and norm.track_running_stats and norm.momentum is not None
    )  # fmt: skip
    if not plain or x.ndim != 3:
        raise ValueError(
            f"eegnet_factored: expected EEGNetv4's first block (a one-channel temporal convolution without bias, "
            f"an affine batch norm with running statistics and momentum, a depthwise spatial convolution over "
            f"all {x.shape[1] if x.ndim == 3 else '?'} electrodes) and x of shape [N, C, T]; got {tuple(x.shape)}"
        )


def _first_block(temporal: nn.Conv2d, norm: nn.BatchNorm2d, spatial: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """[N, F1 * D, 1, T_out]: ``spatial(norm(temporal(x[:, None])))``, computed factored."""
    n_filters, n_outputs = temporal.out_channels, spatial.out_channels
    taps, pad = temporal.kernel_size[1], temporal.padding[1]
    n_out = x.shape[-1] + 2 * pad - taps + 1
    with torch.no_grad():  # as braindecode's Conv2dWithConstraint does before each call
        spatial.weight.data = torch.renorm(spatial.weight.data, p=2, dim=0, maxnorm=spatial.max_norm)
    w_time = temporal.weight.reshape(n_filters, taps)
    w_space = spatial.weight.reshape(n_outputs, x.shape[1])
    mean, var = _batch_statistics(norm, w_time, x, pad, n_out)
    scale = norm.weight / torch.sqrt(var + norm.eps)
    per_output = n_outputs // n_filters
    filtered = _filter(torch.einsum("gc,nct->ngt", w_space, x), w_time.repeat_interleave(per_output, 0), pad, n_out)
    shift = (norm.bias - scale * mean).repeat_interleave(per_output) * w_space.sum(1)
    hidden = (scale.repeat_interleave(per_output)[:, None] * filtered + shift[:, None]).unsqueeze(2)
    # in the memory layout the module's own block leaves (build_model's channels-last weights):
    # dropout draws its masks in memory order, so the same random stream drops the same units
    return hidden.contiguous(memory_format=_layout(temporal))


def _layout(temporal: nn.Conv2d) -> torch.memory_format:
    """Channels-last where the temporal weights have its strides, as the convolution decides (with
    one input channel both layouts count as contiguous; the strides still differ)."""
    weight = temporal.weight
    channels_last = torch.empty(weight.shape, device="meta").to(memory_format=torch.channels_last).stride()
    return torch.channels_last if weight.stride() == channels_last else torch.contiguous_format


def _batch_statistics(norm: nn.BatchNorm2d, w_time: torch.Tensor, x: torch.Tensor, pad: int, n_out: int):
    """Each temporal filter's output mean and (biased) variance over the batch in training mode,
    its running statistics updated; the running statistics themselves in eval mode."""
    if not norm.training:
        return norm.running_mean, norm.running_var
    with torch.no_grad():
        sums, lagged = lagged_moments(x, w_time.shape[1], pad, n_out)
    count = x.shape[0] * x.shape[1] * n_out
    taps = w_time.double()
    mean = taps @ sums / count
    var = ((taps @ lagged) * taps).sum(1) / count - mean**2
    with torch.no_grad():
        momentum = norm.momentum
        norm.running_mean.mul_(1 - momentum).add_(momentum * mean.float())
        norm.running_var.mul_(1 - momentum).add_(momentum * (var * count / (count - 1)).float())
        norm.num_batches_tracked.add_(1)
    return mean.float(), var.float()


def lagged_moments(x: torch.Tensor, taps: int, pad: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``s`` [taps] and ``R`` [taps, taps] (float64) of ``x`` [N, C, T] zero-padded by ``pad`` on
    each side (``xp``): ``s[k] = sum xp[n, c, t + k]`` and ``R[k, l] = sum xp[n, c, t + k] *
    xp[n, c, t + l]``, over every series and ``t < n_out``.

    ``R`` sums the input's Gram matrix over time, ``M[i, j] = sum_nc xp[i] xp[j]``, along its
    diagonals: ``R[k, k + d] = sum_{t < n_out} M[t + k, t + k + d]``. Only the band ``d < taps``
    is needed, so ``M`` is built in blocks of ``taps`` columns, each against itself and the next
    (a tenth of the whole Gram matrix for five-second windows), and each diagonal summed by a
    running sum."""
    n_series, length = x.shape[0] * x.shape[1], x.shape[-1]
    n_blocks = -(-(length + 2 * pad) // taps)
    padded = F.pad(x, (pad, (n_blocks + 1) * taps - length - pad)).reshape(n_series, -1)
    rows = padded[:, : n_blocks * taps].reshape(n_series, n_blocks, taps).permute(1, 2, 0)
    blocks = torch.bmm(rows, padded.unfold(1, 2 * taps, taps).permute(1, 0, 2)).contiguous()
    # band[i, d] = M[i, i + d]: within a block of [taps, 2 * taps], row a's entries a .. a + taps
    band = blocks.as_strided((n_blocks, taps, taps), (2 * taps * taps, 2 * taps + 1, 1)).reshape(-1, taps)
    along = torch.cat([band.new_zeros(1, taps, dtype=torch.float64), band.double().cumsum(0)])
    lag = torch.arange(taps)
    upper = along[lag + n_out] - along[lag]  # [k, d] = R[k, k + d]
    start, gap = torch.meshgrid(lag, lag, indexing="ij")
    inside = start + gap < taps
    lagged = torch.zeros(taps, taps, dtype=torch.float64)
    lagged[start[inside], (start + gap)[inside]] = upper[inside]
    lagged = lagged + torch.triu(lagged, 1).T
    series = torch.cat([padded.new_zeros(1, dtype=torch.float64), padded.sum(0, dtype=torch.float64).cumsum(0)])
    return series[lag + n_out] - series[lag], lagged


def _filter(z: torch.Tensor, w: torch.Tensor, pad: int, n_out: int) -> torch.Tensor:
    """[N, G, n_out]: each series of ``z`` [N, G, T], zero-padded by ``pad``, cross-correlated with
    its row of ``w`` [G, K] (as ``conv1d`` with groups G computes it), by FFT."""
    size = scipy.fft.next_fast_len(z.shape[-1] + 2 * pad, real=True)  # no wrap-around reaches an output
    spectrum = torch.fft.rfft(F.pad(z, (pad, pad)), n=size) * torch.fft.rfft(w, n=size).conj()
    return torch.fft.irfft(spectrum, n=size)[..., :n_out]
