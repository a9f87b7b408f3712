"""The electrode graph and the GNN layer: construction, locality, learnable weights, both paths."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch_geometric.nn import MessagePassing

from eegfm.model import EEGFMConfig, canonical_positions, positions_for
from eegfm.model.graph_conv import ElectrodeGraphConv
from eegfm.model.spatial import (
    SpatialGNNLayer,
    build_electrode_graph,
    disjoint_union_edges,
)
from tests.model.conftest import make_batch, make_model


def test_neighbours_are_the_nearest_electrodes_self_first():
    positions = canonical_positions()
    graph = build_electrode_graph(positions, torch.ones(1, 19), k=4)
    assert graph.neighbours.shape == (1, 19, 5)
    distances = torch.cdist(positions[0].double(), positions[0].double())
    for i in range(19):
        chosen = graph.neighbours[0, i]
        assert chosen[0] == i
        # every chosen neighbour is at least as close as every electrode left out
        left_out = sorted(set(range(19)) - set(chosen.tolist()))
        assert distances[i, chosen].max() <= distances[i, left_out].min() + 1e-6
    # Cz's four nearest electrodes in the 10-20 layout
    cz = 9
    names = {
        c: i
        for i, c in enumerate(
            [
                "Fp1",
                "F3",
                "C3",
                "P3",
                "F7",
                "T3",
                "T5",
                "O1",
                "Fz",
                "Cz",
                "Pz",
                "Fp2",
                "F4",
                "C4",
                "P4",
                "F8",
                "T4",
                "T6",
                "O2",
            ]
        )
    }
    assert set(graph.neighbours[0, cz, 1:].tolist()) == {names[n] for n in ("Fz", "Pz", "C3", "C4")}
    assert torch.allclose(graph.geometry[0, :, 0, 0], torch.zeros(19), atol=1e-5)  # self: distance 0


def test_small_montages_pad_the_neighbour_slots_with_zero_weights():
    """Every electrode has k + 1 slots whatever the montage (fixed shapes: dynamic ONNX channels);
    a 3-electrode montage uses 3 of them and the padding slots get exactly zero weight."""
    graph = build_electrode_graph(positions_for(["Cz", "O1", "Fp2"]), torch.ones(2, 3), k=6)
    assert graph.neighbours.shape == (2, 3, 7)
    assert graph.neighbour_present.sum(-1).tolist() == [[3, 3, 3]]
    for i in range(3):  # the three real slots hold the three electrodes, padding points to itself
        assert set(graph.neighbours[0, i][graph.neighbour_present[0, i]].tolist()) == {0, 1, 2}
        assert (graph.neighbours[0, i][~graph.neighbour_present[0, i]] == i).all()
    weights = _layer("pyg").edge_weights(graph)
    assert (weights[:, ~graph.neighbour_present[0]] == 0).all()
    torch.testing.assert_close(weights.sum(dim=2), torch.ones(2, 3, 4))
    # padding slots change nothing: the same as the graph a 3-neighbour k builds
    x = torch.randn(2, 3, 4, 64)
    exact = build_electrode_graph(positions_for(["Cz", "O1", "Fp2"]), torch.ones(2, 3), k=2)
    assert exact.neighbour_present.all()
    for impl in ("pyg", "dense"):
        layer = _layer(impl)
        torch.testing.assert_close(layer(x, graph), layer(x, exact), atol=1e-6, rtol=1e-5)


def test_disjoint_union_edges_match_a_loop_reference():
    batch, n_chans, k, n_patches = 2, 4, 3, 3
    neighbours = torch.stack([torch.randperm(n_chans)[:k] for _ in range(batch * n_chans)]).view(batch, n_chans, k)
    edges = disjoint_union_edges(neighbours, n_patches)
    expected = []
    for b, c, j, p in itertools.product(range(batch), range(n_chans), range(k), range(n_patches)):
        source = (b * n_chans + int(neighbours[b, c, j])) * n_patches + p
        target = (b * n_chans + c) * n_patches + p
        expected.append([source, target])
    assert edges.T.tolist() == expected
    # one disjoint graph per (sample, patch): edges never cross samples or patches
    graph_of = lambda node: (node // (n_chans * n_patches), node % n_patches)  # noqa: E731
    assert all(graph_of(s) == graph_of(t) for s, t in edges.T.tolist())


def _layer(impl: str) -> SpatialGNNLayer:
    config = EEGFMConfig.from_preset("tiny", gnn_impl=impl)
    torch.manual_seed(0)
    layer = SpatialGNNLayer(config)
    with torch.no_grad():
        layer.interpolated_logit.copy_(torch.tensor([-2.0, 0.5, 1.0, -0.5]))
    return layer


@pytest.mark.parametrize("impl", ["dense", "gather"])
def test_message_passing_is_a_torch_geometric_layer_and_equals_the_other_paths(impl):
    assert isinstance(ElectrodeGraphConv(), MessagePassing)
    pyg, dense = _layer("pyg"), _layer(impl)
    dense.load_state_dict(pyg.state_dict())
    x = torch.randn(3, 19, 6, 64, requires_grad=True)
    mask = torch.ones(3, 19)
    mask[1, [3, 9]] = 0
    graph = build_electrode_graph(canonical_positions(), mask, k=4)
    out_pyg, out_dense = pyg(x, graph), dense(x, graph)
    torch.testing.assert_close(out_pyg, out_dense, atol=1e-5, rtol=1e-5)
    grad_pyg = torch.autograd.grad(out_pyg.square().sum(), [x, *pyg.parameters()])
    grad_dense = torch.autograd.grad(out_dense.square().sum(), [x, *dense.parameters()])
    for a, b in zip(grad_pyg, grad_dense):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("impl", ["dense", "gather"])
def test_whole_model_agrees_across_gnn_paths(impl):
    model = make_model("tiny")
    inputs = make_batch(2, 5, modalities=("ecg",))
    with torch.no_grad():
        pyg = model(**inputs).pooled
        model.set_gnn_impl(impl)
        other = model(**inputs).pooled
    assert model.config.gnn_impl == impl
    torch.testing.assert_close(pyg, other, atol=1e-5, rtol=1e-5)


def test_messages_only_flow_along_graph_edges():
    layer = _layer("pyg")
    positions = canonical_positions()
    graph = build_electrode_graph(positions, torch.ones(1, 19), k=4)
    x = torch.randn(1, 19, 2, 64)
    target = 0  # Fp1
    outside = sorted(set(range(19)) - set(graph.neighbours[0, target].tolist()))
    changed = x.clone()
    changed[:, outside] += 5.0
    with torch.no_grad():
        before, after = layer(x, graph), layer(changed, graph)
    torch.testing.assert_close(after[:, target], before[:, target])
    assert not torch.allclose(after[:, outside], before[:, outside])
    # patches are separate graphs
    changed = x.clone()
    changed[:, :, 1] += 5.0
    with torch.no_grad():
        torch.testing.assert_close(layer(changed, graph)[:, :, 0], before[:, :, 0])


def test_edge_weights_are_learned_from_geometry_and_interpolation():
    layer = _layer("pyg")
    mask = torch.ones(1, 19)
    mask[0, 9] = 0  # Cz interpolated
    graph = build_electrode_graph(canonical_positions(), mask, k=4)
    weights = layer.edge_weights(graph)
    torch.testing.assert_close(weights.sum(dim=2), torch.ones(1, 19, 4))
    out = layer(torch.randn(1, 19, 3, 64), graph)
    out.square().sum().backward()
    assert layer.edge_logits[0].weight.grad.abs().sum() > 0
    assert layer.interpolated_logit.grad.abs().sum() > 0
    # the interpolated-neighbour logit lowers (here: head 0, logit -2) the weight of Cz's edges
    edges_to_cz = graph.neighbours[0] == 9
    clean_graph = build_electrode_graph(canonical_positions(), torch.ones(1, 19), k=4)
    clean = layer.edge_weights(clean_graph)
    non_self = edges_to_cz.clone()
    non_self[9] = False
    assert (weights[0, ..., 0][non_self] < clean[0, ..., 0][non_self]).all()


_GATHER_THEN_PYG = textwrap.dedent(
    """
    import sys
    import torch
    from eegfm.model import create_model
    from tests.model.conftest import make_batch

    torch.manual_seed(0)
    model = create_model("tiny", head="hms6", gnn_impl="gather").eval()
    before = "torch_geometric" in sys.modules
    batch = make_batch(batch=2, seconds=5)
    with torch.no_grad():
        gathered = model(**batch)["logits"]
        model.set_gnn_impl("pyg")
        passed = model(**batch)["logits"]
    print(before, "torch_geometric" in sys.modules, torch.allclose(gathered, passed, atol=1e-5))
    """
)


def test_only_the_pyg_form_imports_torch_geometric():
    # A fresh process: the test session has imported torch_geometric (1-2 s) long since.
    repo = str(Path(__file__).resolve().parents[2])  # for tests.model.conftest
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), repo]))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    done = subprocess.run(
        [sys.executable, "-c", _GATHER_THEN_PYG], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "False True True"


_LOAD_FOR_INFERENCE = textwrap.dedent(
    """
    import sys
    import torch
    from eegfm.model.architectures import load_model_folder
    from tests.model.conftest import make_batch

    model = load_model_folder(sys.argv[1], for_inference=True)
    with torch.no_grad():
        logits = model(**make_batch(batch=2, seconds=5))["logits"]
    torch.save(logits, sys.argv[2])
    print(model.config.gnn_impl, "torch_geometric" in sys.modules)
    """
)


def test_a_saved_pyg_model_loads_for_inference_without_torch_geometric_and_answers_the_same(tmp_path):
    """What eegfm-predict and eegfm-serve load (``inference.backends``): the gather form of a model
    trained and saved in the pyg form, the same logits, torch_geometric never imported."""
    model = make_model("tiny")
    assert model.config.gnn_impl == "pyg"
    model.save_pretrained(tmp_path / "model")
    with torch.no_grad():
        expected = model(**make_batch(batch=2, seconds=5))["logits"]
    repo = str(Path(__file__).resolve().parents[2])  # for tests.model.conftest
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), repo]))
    argv = [sys.executable, "-c", _LOAD_FOR_INFERENCE, str(tmp_path / "model"), str(tmp_path / "logits.pt")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "gather False"
    assert torch.allclose(torch.load(tmp_path / "logits.pt"), expected, atol=1e-5)
    assert json.loads((tmp_path / "model" / "config.json").read_text())["gnn_impl"] == "pyg"  # the file as saved
