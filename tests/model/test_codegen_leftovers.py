"""Building the model leaves no torch_geometric codegen file in the temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

# A fresh process: torch_geometric generates (and writes) the module once per process.
_BUILD_AND_RUN = textwrap.dedent(
    """
    import inspect, sys, tempfile
    import torch
    from eegfm.model import create_model
    from eegfm.model.graph_conv import ElectrodeGraphConv
    from tests.model.conftest import make_batch

    torch.manual_seed(0)
    model = create_model("tiny", head="hms6", gnn_impl="pyg").eval()
    with torch.no_grad():
        logits = model(**make_batch(batch=2, seconds=5))["logits"]
    assert torch.isfinite(logits).all(), logits
    # The generated module's source is still there for inspect (and TorchScript).
    assert "def propagate" in inspect.getsource(ElectrodeGraphConv.propagate)
    torch.jit.script(ElectrodeGraphConv())
    print(tempfile.gettempdir())
    """
)


def _leftovers(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if "ElectrodeGraphConv" in name and "propagate" in name)


def test_building_the_model_leaves_no_generated_file_in_the_temp_folder(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    repo = str(Path(__file__).resolve().parents[2])  # for tests.model.conftest
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), repo]))
    env = dict(os.environ, TMPDIR=str(temp), OMP_NUM_THREADS="1", PYTHONPATH=path)
    done = subprocess.run(
        [sys.executable, "-c", _BUILD_AND_RUN], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(temp)  # the private temp folder was the one used
    assert _leftovers(temp) == []
