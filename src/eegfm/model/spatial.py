"""The electrode graph and the GNN layer that passes messages along it.

Every electrode is joined to its ``k`` nearest electrodes on the head plus itself; the graph
depends on the montage only, so it is built once per forward pass and shared by all layers and
patches. A layer computes ``h_i <- W_o sum_j w_ij^h W_v h_j``, with edge weights learned from the
edge's geometry and whether the neighbour was interpolated, softmax-normalised over each
neighbourhood (on a small (B, C, k+1, heads) tensor, since they do not depend on the features).

Three implementations of the same sums (``EEGFMConfig.gnn_impl``): ``"pyg"``, a torch_geometric
``MessagePassing`` (``model.graph_conv``, imported with torch_geometric only where a layer uses it:
torch_geometric's import takes 1-2 s) over the disjoint union of all B x P graphs (node ``(b, c, p)``
is row ``(b*C + c)*P + p``, so tokens keep the encoder's layout); ``"dense"``, a (B, heads, C, C)
adjacency and one batched matmul (no scatter kernels: faster on CPUs and in ONNX Runtime, the
export default); ``"gather"``, a gather of the K neighbours' values and a weighted sum, which
``torch.compile`` fuses into one kernel without a K-fold message tensor in memory.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from eegfm.model.config import EEGFMConfig


@dataclasses.dataclass
class ElectrodeGraph:
    """k-NN electrode graph of a batch, shared by every patch.

    Every electrode has ``K = k + 1`` neighbour slots (itself included): a montage of fewer
    electrodes fills the rest with the electrode itself, marked absent (weight exactly 0). A fixed
    ``K`` keeps every shape independent of the channel count, so ONNX can keep it dynamic.
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
        """(2, B*C*K*P) edges (source, target) of the disjoint union of all B x P graphs, ordered
        (b, target c, neighbour k, patch p) as the edge weights; cached for the forward pass."""
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
    # k padding columns, farther than any electrode: topk(k + 1) is valid for any C >= 1 (a
    # topk(min(k, C - 1) + 1) would make every shape depend on C, which torch.export cannot keep dynamic).
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


class SpatialGNNLayer(nn.Module):
    """One message-passing step over the electrode graph for every (sample, patch) at once."""

    def __init__(self, config: EEGFMConfig) -> None:
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.edge_logits = nn.Sequential(nn.Linear(4, 32), nn.GELU(), nn.Linear(32, self.n_heads))
        # Learned per head: how much less (or more) to trust an interpolated neighbour.
        self.interpolated_logit = nn.Parameter(torch.zeros(self.n_heads))
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.impl = config.gnn_impl  # builds ``conv`` for "pyg"

    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, impl: str) -> None:
        """The GNN form; "pyg" adds the torch_geometric layer ``conv`` (no weights: the state dict
        is the same in every form), once, when the layer is built or first switched to it."""
        if impl == "pyg" and "conv" not in self._modules:
            from eegfm.model.graph_conv import ElectrodeGraphConv  # torch_geometric: 1-2 s to import

            self.conv = ElectrodeGraphConv()
        self._impl = impl

    def edge_weights(self, graph: ElectrodeGraph) -> torch.Tensor:
        """(B, C, K, heads) weights summing to 1 over each electrode's K slots, in float32 (the
        tensor is tiny); padding slots get exactly 0, and the electrode itself is always real."""
        logits = self.edge_logits(graph.geometry).float()
        logits = logits + graph.neighbour_interpolated.unsqueeze(-1).float() * self.interpolated_logit.float()
        logits = logits.masked_fill(~graph.neighbour_present.unsqueeze(-1), torch.finfo(torch.float32).min)
        return logits.softmax(dim=2)

    def forward(self, x: torch.Tensor, graph: ElectrodeGraph) -> torch.Tensor:
        values = self.value(x)
        weights = self.edge_weights(graph).to(values.dtype)
        mix = {"pyg": self._message_passing, "gather": self._gather}.get(self.impl, self._dense)
        return self.out(mix(values, weights, graph))

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
