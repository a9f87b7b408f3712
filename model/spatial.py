"""The electrode graph and the GNN layer that passes messages along it.

Graph: every electrode is joined to its ``k`` nearest electrodes on the head (Euclidean distance
between unit-sphere positions) plus itself. The graph depends on the montage only, so it is built
once per forward pass from ``positions`` and shared by all GNN layers, patches and (for a shared
montage) samples.

Layer: a head-wise weighted sum of neighbour values, ``h_i <- W_o sum_j w_ij^h W_v h_j``, where the
edge weights ``w_ij`` are learned per layer from the edge's geometry (distance and direction) and
from whether the neighbour was interpolated (``channel_mask == 0``), then normalised over each
electrode's neighbourhood. Because they do not depend on the features, the softmax over
neighbours runs on a small (B, C, k+1, heads) tensor instead of on every edge.

Three implementations of the same sums, selected by ``EEGFMConfig.gnn_impl``:

- ``"pyg"``: a ``torch_geometric`` ``MessagePassing`` layer over one disjoint-union graph holding
  all B x n_patches graphs; its ``edge_index`` is built with tensor arithmetic, no Python loops.
  Tokens stay in the encoder's (B, C, P, D) layout: node ``(b, c, p)`` is row ``(b*C + c)*P + p``,
  so no transpose is needed between the temporal and the spatial layers.
- ``"dense"``: the same weights scattered into a (B, heads, C, C) adjacency and applied with one
  batched matmul. With C = 19 this avoids scatter kernels entirely, which is faster on CPUs and
  in ONNX Runtime; tests check that both agree to float32 rounding.
- ``"gather"``: each electrode gathers its K neighbours' values along the channel axis and sums
  them weighted, ``(B, C, K, P, D) -> (B, C, P, D)``. Eagerly this materialises K copies of the
  values as the ``pyg`` path does, but under ``torch.compile`` the gather, product and sum fuse
  into one kernel that reads every value once per neighbour from cache and writes the output
  once: no K-fold message tensor in memory and no scatter in the forward pass.

``pyg`` and ``dense`` export with the dynamo ONNX exporter (dynamic batch, channels and time);
``model.export`` uses ``dense`` by default.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from eegfm.model.config import EEGFMConfig


@dataclasses.dataclass
class ElectrodeGraph:
    """k-NN electrode graph of a batch: per-electrode neighbour lists, shared by every patch.

    Every electrode has ``K = k + 1`` neighbour slots (itself included), whatever the montage: a
    montage with fewer than ``k + 1`` electrodes fills the slots it cannot use with the electrode
    itself and marks them absent (``neighbour_present`` False, weight exactly 0). A fixed ``K``
    keeps every shape independent of the channel count, which is what lets the ONNX export take a
    dynamic number of channels (``model.export``).
    """

    neighbours: torch.Tensor  # (B, C, K) int64, neighbour indices, nearest first (self included)
    geometry: torch.Tensor  # (B or 1, C, K, 4): distance and direction (neighbour - electrode)
    neighbour_interpolated: torch.Tensor  # (B, C, K): 1 where the neighbour's channel_mask is 0
    neighbour_present: torch.Tensor  # (B or 1, C, K) bool: False for the padding slots
    _edges: tuple[object, torch.Tensor] | None = None

    @property
    def n_neighbours(self) -> int | torch.SymInt:
        return self.neighbours.shape[-1]  # no int(): it would specialise a traced shape

    def edge_index(self, n_patches: int | torch.SymInt) -> torch.Tensor:
        """(2, B*C*K*P) edges (source, target) of the disjoint union of all B x P graphs.

        Edges are ordered (b, target c, neighbour k, patch p), the order of the edge weights in
        :meth:`SpatialGNNLayer._message_passing`. Built once and reused by the layers of a forward
        pass (all of which see the same number of patches).
        """
        cached = None if self._edges is None else self._edges[0]
        # Identity for traced SymInts (comparing them would add a guard), equality for ints.
        same = cached is n_patches or (isinstance(n_patches, int) and isinstance(cached, int) and cached == n_patches)
        if not same:
            self._edges = (n_patches, disjoint_union_edges(self.neighbours, n_patches))
        return self._edges[1]


# Squared distance given to padding slots: unit-sphere electrodes are at most 4 apart (squared).
_FAR = 1.0e4


def build_electrode_graph(positions: torch.Tensor, channel_mask: torch.Tensor, k: int) -> ElectrodeGraph:
    """The k-nearest-neighbour graph (plus self-loops) of (B or 1, C, 3) electrode positions."""
    batch, n_chans = channel_mask.shape
    offsets = positions.unsqueeze(-3) - positions.unsqueeze(-2)  # [.., i, j] = pos_j - pos_i
    sq_dist = offsets.square().sum(-1)
    # Symmetric montages have equidistant electrodes, and topk breaks ties differently in PyTorch
    # and ONNX Runtime; a tiny index-dependent offset makes the choice unique and identical.
    tie_break = torch.arange(n_chans, device=positions.device, dtype=positions.dtype) * (1e-4 / n_chans)
    scores = sq_dist + tie_break
    # k padding columns, farther than any electrode: topk(k + 1) is valid for any C >= 1 and a
    # montage with C <= k electrodes gets C real neighbours and k + 1 - C absent ones. (Taking
    # topk(min(k, C - 1) + 1) instead makes the neighbour count, and every shape after it, depend
    # on C: torch.export cannot keep C dynamic through that min.)
    padding = torch.full_like(scores[..., :1], _FAR).expand(*scores.shape[:-1], k)
    order = torch.cat([scores, padding], dim=-1).topk(k + 1, dim=-1, largest=False).indices
    present = order < n_chans  # (B or 1, C, K)
    itself = torch.arange(n_chans, device=order.device).view(1, -1, 1).expand_as(order)
    neighbours = torch.where(present, order, itself)
    direction = torch.gather(offsets, 2, neighbours.unsqueeze(-1).expand(-1, -1, -1, 3))
    distance = torch.sqrt(torch.gather(sq_dist, 2, neighbours) + 1e-12).unsqueeze(-1)
    geometry = torch.cat([distance, direction], dim=-1)
    neighbours = neighbours.expand(batch, -1, -1)
    interpolated = 1.0 - channel_mask
    neighbour_interpolated = torch.gather(interpolated.unsqueeze(1).expand(-1, n_chans, -1), 2, neighbours)
    return ElectrodeGraph(neighbours, geometry, neighbour_interpolated, present)


def disjoint_union_edges(neighbours: torch.Tensor, n_patches: int | torch.SymInt) -> torch.Tensor:
    """Edge index of B x n_patches copies of per-sample graphs, nodes numbered (b*C + c)*P + p."""
    batch, n_chans, k = neighbours.shape
    device = neighbours.device
    sample_offset = (torch.arange(batch, device=device) * n_chans).view(batch, 1, 1, 1)
    patch = torch.arange(n_patches, device=device).view(1, 1, 1, n_patches)
    source = (sample_offset + neighbours.unsqueeze(-1)) * n_patches + patch
    target = (sample_offset + torch.arange(n_chans, device=device).view(1, n_chans, 1, 1)) * n_patches + patch
    return torch.stack([source.reshape(-1), target.expand(batch, n_chans, k, n_patches).reshape(-1)])


class ElectrodeGraphConv(MessagePassing):
    """Sum of neighbour features weighted per edge and head: out_i = sum_j w_ij * x_j.

    ``x`` is (n_nodes, heads, head_dim), ``edge_weight`` (n_edges, heads).
    """

    def __init__(self) -> None:
        super().__init__(aggr="add", node_dim=0)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        return self.propagate(edge_index, x=x, edge_weight=edge_weight)

    def message(self, x_j: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        return x_j * edge_weight.unsqueeze(-1)


class SpatialGNNLayer(nn.Module):
    """One message-passing step over the electrode graph for every (sample, patch) at once."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.impl = config.gnn_impl
        self.edge_logits = nn.Sequential(nn.Linear(4, 32), nn.GELU(), nn.Linear(32, self.n_heads))
        # Learned per head: how much less (or more) to trust an interpolated neighbour.
        self.interpolated_logit = nn.Parameter(torch.zeros(self.n_heads))
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.conv = ElectrodeGraphConv()

    def edge_weights(self, graph: ElectrodeGraph) -> torch.Tensor:
        """(B, C, K, heads) weights, each electrode's K incoming weights summing to 1 per head.

        The softmax runs in float32, also under autocast (the tensor is tiny); padding slots of
        small montages get exactly 0, and every row keeps its real neighbours (the electrode itself
        at least), so no row is all-masked.
        """
        logits = self.edge_logits(graph.geometry).float()
        logits = logits + graph.neighbour_interpolated.unsqueeze(-1).float() * self.interpolated_logit.float()
        logits = logits.masked_fill(~graph.neighbour_present.unsqueeze(-1), torch.finfo(torch.float32).min)
        return logits.softmax(dim=2)

    def forward(self, x: torch.Tensor, graph: ElectrodeGraph) -> torch.Tensor:
        values = self.value(x)
        weights = self.edge_weights(graph).to(values.dtype)
        if self.impl == "pyg":
            mixed = self._message_passing(values, weights, graph)
        elif self.impl == "gather":
            mixed = self._gather(values, weights, graph)
        else:
            mixed = self._dense(values, weights, graph)
        return self.out(mixed)

    def _message_passing(self, values: torch.Tensor, weights: torch.Tensor, graph: ElectrodeGraph) -> torch.Tensor:
        batch, n_chans, n_patches, width = values.shape
        nodes = values.reshape(batch * n_chans * n_patches, self.n_heads, self.head_dim)
        edge_weight = weights.unsqueeze(3).expand(-1, -1, -1, n_patches, -1).reshape(-1, self.n_heads)
        mixed = self.conv(nodes, graph.edge_index(n_patches), edge_weight)
        return mixed.reshape(batch, n_chans, n_patches, width)

    def _gather(self, values: torch.Tensor, weights: torch.Tensor, graph: ElectrodeGraph) -> torch.Tensor:
        batch, n_chans, n_patches, width = values.shape
        k = graph.n_neighbours
        index = graph.neighbours.reshape(batch, n_chans * k, 1, 1).expand(-1, -1, n_patches, width)
        gathered = values.gather(1, index).view(batch, n_chans, k, n_patches, self.n_heads, self.head_dim)
        mixed = (gathered * weights.view(batch, n_chans, k, 1, self.n_heads, 1)).sum(dim=2)
        return mixed.reshape(batch, n_chans, n_patches, width)

    def _dense(self, values: torch.Tensor, weights: torch.Tensor, graph: ElectrodeGraph) -> torch.Tensor:
        batch, n_chans, n_patches, width = values.shape
        k = graph.n_neighbours
        adjacency = values.new_zeros(batch, self.n_heads, n_chans, n_chans)
        index = graph.neighbours.unsqueeze(1).expand(-1, self.n_heads, -1, -1)
        adjacency = adjacency.scatter_add(
            3, index, weights.permute(0, 3, 1, 2).reshape(batch, self.n_heads, n_chans, k)
        )
        heads = values.view(batch, n_chans, n_patches, self.n_heads, self.head_dim)
        heads = heads.permute(0, 3, 1, 2, 4).reshape(batch, self.n_heads, n_chans, n_patches * self.head_dim)
        mixed = adjacency @ heads
        mixed = mixed.view(batch, self.n_heads, n_chans, n_patches, self.head_dim).permute(0, 2, 3, 1, 4)
        return mixed.reshape(batch, n_chans, n_patches, width)
