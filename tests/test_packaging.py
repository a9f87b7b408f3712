"""The distribution installs the layers (src/eegfm/<layer>) under the ``eegfm`` package and nothing generic at the
top level of site-packages, with the configs the stages read at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


SRC = REPO / "src" / "eegfm"
STAGES = tuple(sorted(path.name for path in SRC.iterdir() if (path / "__init__.py").is_file()))


def test_the_wheel_puts_every_stage_under_eegfm(tmp_path):
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ behind
    source.mkdir()
    for name in ("setup.py", "README.md", "MANIFEST.in", "requirements", "src"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(
            REPO / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if (REPO / name).is_dir() else {}),
        )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("eegfm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"eegfm"}, top
    stages = {name.split("/")[1] for name in names if name.startswith("eegfm/") and name.count("/") > 1}
    assert stages == set(STAGES), stages
    assert "eegfm/training/configs/cpu-tiny.yaml" in names
    assert {"eegfm/inference/recommendation.yaml", "eegfm/inference/prediction.schema.json"} <= set(names)
    assert "eegfm/pipelines/job/preprocess.py" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "eegfm-preprocess = eegfm.pipelines.job.preprocess:main" in entry_points
