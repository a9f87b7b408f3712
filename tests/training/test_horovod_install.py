"""Horovod is built from source by the install (scripts/install_horovod.sh); prove it runs."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

hvd = pytest.importorskip("horovod.torch", reason="horovod did not build; see .venv/horovod-build.log")

SCRIPT = textwrap.dedent("""
    import torch, horovod.torch as hvd
    hvd.init()
    total = hvd.allreduce(torch.tensor([float(hvd.rank() + 1)]), op=hvd.Sum)
    gathered = hvd.allgather(torch.tensor([[hvd.rank()]]))
    print(f"rank={hvd.rank()} size={hvd.size()} sum={total.item():g} gathered={gathered.flatten().tolist()}")
""")


def test_horovodrun_two_gloo_ranks_allreduce(tmp_path):
    assert hvd.gloo_built()
    script = tmp_path / "allreduce.py"
    script.write_text(SCRIPT)
    horovodrun = shutil.which("horovodrun", path=os.path.dirname(sys.executable))
    assert horovodrun, "horovodrun is not next to the venv's python"
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    result = subprocess.run(
        [horovodrun, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for rank in (0, 1):
        assert f"rank={rank} size=2 sum=3 gathered=[0, 1]" in result.stdout
