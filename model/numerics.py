"""Small numerical helpers shared by the model's modules.

- :func:`float32_region`: a block that runs in float32 even inside ``torch.autocast``, for the few
  computations whose intermediate values overflow float16 or lose too much in bfloat16 (the patch
  spectrum's squared DFT magnitudes, the losses).
- :func:`tie_unused`: a zero-valued term that puts parameters into the autograd graph, so that
  every trainable parameter receives a gradient in every training step (see its docstring).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def float32_region(device: torch.device) -> Iterator[None]:
    """Disable autocast on ``device`` inside the block, if it is enabled (no-op otherwise).

    Only entered when autocast is on, so traced and exported graphs (which never run under
    autocast) contain no autocast region. Inputs still have to be cast with ``.float()``.
    """
    if torch.is_autocast_enabled(device.type):
        with torch.autocast(device.type, enabled=False):
            yield
    else:
        yield


def tie_unused(x: torch.Tensor, *modules: nn.Module | None) -> torch.Tensor:
    """``x + 0 * (sum of the modules' trainable parameters)``: the same values, more gradients.

    Why: DistributedDataParallel without ``find_unused_parameters=True`` (and Horovod's
    DistributedOptimizer) wait for a gradient of every trainable parameter in every step; a
    branch that a batch leaves unused (an absent optional modality, the sample-mask embedding
    outside pretraining, the encoder's top layers in pretraining) would otherwise get none and
    stall or fail the step. Tied in with a zero weight, those parameters receive exact-zero
    gradients and the forward values are unchanged (``x + 0.0`` is ``x``).

    Only in training mode with autograd on: inference and exported ONNX graphs are untouched.
    Caveat: a zero gradient is not "no gradient" for the optimizer; AdamW still applies weight
    decay (and any momentum left from earlier steps) to the tied parameters, as it does to any
    parameter whose gradient happens to be zero.
    """
    present = [m for m in modules if m is not None]
    if not torch.is_grad_enabled() or not any(m.training for m in present):
        return x
    parameters = [p for m in present for p in m.parameters() if p.requires_grad]
    if not parameters:
        return x
    total = torch.stack([p.sum().to(torch.float32) for p in parameters]).sum()
    return x + (0.0 * total).to(x.dtype)
