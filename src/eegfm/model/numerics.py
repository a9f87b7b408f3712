"""Numerical helpers shared by the model's modules: float32 regions inside autocast, and
zero-valued tie-ins that give every trainable parameter a gradient in every step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def float32_region(device: torch.device) -> Iterator[None]:
    """Disable autocast on ``device`` inside the block (inputs still need ``.float()``); a no-op
    when autocast is off, so exported graphs contain no autocast region."""
    if torch.is_autocast_enabled(device.type):
        with torch.autocast(device.type, enabled=False):
            yield
    else:
        yield


def tie_unused(x: torch.Tensor, *modules: nn.Module | None) -> torch.Tensor:
    """``x + 0 * (sum of the modules' trainable parameters)``: the same values, more gradients.

    DDP without ``find_unused_parameters`` (and Horovod) waits for a gradient of every trainable
    parameter; a branch a batch leaves unused (an absent modality, the sample-mask embedding) would
    get none and stall the step. Only in training mode with autograd on. AdamW still applies weight
    decay (and old momentum) to the tied parameters, as to any parameter whose gradient is zero.
    """
    present = [m for m in modules if m is not None]
    if not torch.is_grad_enabled() or not any(m.training for m in present):
        return x
    parameters = [p for m in present for p in m.parameters() if p.requires_grad]
    if not parameters:
        return x
    total = torch.stack([p.sum().to(torch.float32) for p in parameters]).sum()
    return x + (0.0 * total).to(x.dtype)
