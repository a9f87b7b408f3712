import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from eegfm.training.checkpoint_state import CheckpointError, flatten_state, unflatten_state


def test_flatten_round_trip_keeps_types_keys_and_values():
    state = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 2)}, 1: {}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "params": [0, 1], "name": None}],
        "flags": [True, False],
        "inf": math.inf,
        "nan": math.nan,
        2.5: "float key",
        "half": torch.ones(2, dtype=torch.bfloat16),
        "rng": np.random.get_state(),
        "np_scalar": np.float32(0.5),
        "path": Path("/x/y"),
    }
    tensors, skeleton = flatten_state(state)
    json.dumps(skeleton, allow_nan=False)  # strictly JSON
    assert set(tensors) == {"state/0/step", "state/0/exp_avg", "half"}
    back = unflatten_state(tensors, skeleton)
    assert list(back["state"]) == [0, 1] and back["param_groups"][0]["betas"] == (0.9, 0.95)
    assert back[2.5] == "float key" and back["flags"] == [True, False] and back["inf"] == math.inf
    assert math.isnan(back["nan"]) and back["half"].dtype == torch.bfloat16
    assert back["rng"][1].dtype == np.uint32 and np.array_equal(back["rng"][1], state["rng"][1])
    assert back["np_scalar"] == 0.5 and back["path"] == "/x/y"


def test_flatten_names_the_path_of_what_it_cannot_store():
    with pytest.raises(CheckpointError, match=r"state optimizer/fn: cannot store a function"):
        flatten_state({"optimizer": {"fn": lambda: 0}})
    with pytest.raises(CheckpointError, match=r"dict key \(1, 2\) of type tuple"):
        flatten_state({"a": {(1, 2): 0}})
