"""The electrode graph's message passing as a torch_geometric layer: ``EEGFMConfig.gnn_impl`` "pyg"
(``model.spatial`` holds the graph and the layer that uses this one). A module of its own so that
torch_geometric, whose import takes 1-2 s (it loads ``torch._dynamo``), is imported only by a model
that passes messages this way."""

from __future__ import annotations

import contextlib
import linecache
import os
import sys
import tempfile

import torch
from torch_geometric.nn import MessagePassing

_DROPPED: set[str] = set()  # generated files already taken out of the temp folder by this process


def drop_generated_source(conv: type[MessagePassing]) -> None:
    """Delete the ``propagate`` module torch_geometric generated for ``conv`` from the temp folder.

    torch_geometric writes it there (never deleted, one file per process that builds a model) and
    loads it once per process; its text stays in ``linecache`` (mtime None: never re-checked
    against the disk) so ``inspect`` and TorchScript still find it. A file outside the temp folder
    is left alone: it is no leftover of ours."""
    module = sys.modules.get(f"{conv.__module__}_{conv.__name__}_propagate")
    path = getattr(module, "__file__", None)
    if not path or path in _DROPPED:
        return
    _DROPPED.add(path)
    temp = os.path.realpath(tempfile.gettempdir())
    if os.path.commonpath([os.path.realpath(path), temp]) != temp:
        return
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return
    linecache.cache[path] = (len(text), None, text.splitlines(keepends=True), path)
    with contextlib.suppress(OSError):  # another process's cleanup, or a read-only temp folder
        os.remove(path)


class ElectrodeGraphConv(MessagePassing):
    """out_i = sum_j w_ij * x_j for ``x`` (n_nodes, heads, head_dim), ``edge_weight`` (n_edges, heads)."""

    def __init__(self) -> None:
        super().__init__(aggr="add", node_dim=0)
        drop_generated_source(type(self))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        return self.propagate(edge_index, x=x, edge_weight=edge_weight)

    def message(self, x_j: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        return x_j * edge_weight.unsqueeze(-1)
