"""The cluster image's Dockerfile, read against the repository (no Docker engine runs here, so
the image itself is not built by the tests): what it copies exists, every package setup.py ships
is copied, its Python and torch are the project's, and its user is the one the pods run as."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"


def test_the_image_copies_every_shipped_package_and_installs_the_pinned_stack():
    text = DOCKERFILE.read_text()
    copied = re.findall(r"^COPY (\S+)", text, re.M)
    for source in copied:
        assert (REPO / source).exists(), source
    shipped = re.search(r'find_packages\(include=\[([^\]]*)\]', (REPO / "setup.py").read_text()).group(1)
    packages = {name.strip(' "*') for name in shipped.split(",")}
    assert packages <= set(copied), packages - set(copied)
    python = re.search(r"python_requires=\">=(\d+\.\d+)", (REPO / "setup.py").read_text()).group(1)
    assert re.search(rf"^FROM python:{re.escape(python)}-", text, re.M)
    torch = re.search(r"^torch==(\S+)$", (REPO / "requirements" / "lock.txt").read_text(), re.M).group(1)
    assert f"pip install torch=={torch}" in text and "--constraint requirements/lock.txt" in text


def test_the_image_user_is_the_one_the_pods_run_as():
    uid = re.search(r"^USER (\d+)", DOCKERFILE.read_text(), re.M).group(1)
    component_file = REPO / "infra" / "kubernetes" / "components" / "image" / "kustomization.yaml"
    component = yaml.safe_load(component_file.read_text())
    [patch] = component["patches"]
    pod_context = yaml.safe_load(patch["patch"])[0]["value"]
    assert str(pod_context["runAsUser"]) == uid


def test_the_build_context_leaves_out_the_environment_and_outputs():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "outputs", ".git"} <= set(ignored)


def _image_env() -> dict[str, str]:
    """The ENV block of the image, as the pods see it."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    block = re.search(r"^ENV (.*)$", text, re.M).group(1)
    return dict(pair.split("=", 1) for pair in block.split())


def _compiled_from_source(folder: Path, modules: str) -> list[str]:
    """eegfm source files that importing ``modules`` from ``folder`` (as `python -m` does from the
    image's WORKDIR) compiles instead of loading their cached bytecode."""
    env = {**os.environ, **_image_env(), "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-v", "-c", f"import {modules}"], cwd=folder, env=env,
                          capture_output=True, text=True, check=True)
    loaded = re.findall(r"^# code object from '?(.+?)'?$", done.stderr, re.M)
    ours = [path for path in loaded if path.startswith(str(folder))]
    assert ours, f"nothing imported from {folder}: the copies under test were not the ones imported"
    return [path for path in ours if path.endswith(".py")]


def test_the_image_precompiles_the_packages_the_pods_run_from_its_workdir(tmp_path):
    text = DOCKERFILE.read_text()
    # The Job and Deployment run `python -m ...` from WORKDIR, so its copies are what they import.
    for manifest in ("preprocess/job.yaml", "serve/deployment.yaml"):
        container = yaml.safe_load((REPO / "infra" / "kubernetes" / manifest).read_text())
        [spec] = container["spec"]["template"]["spec"]["containers"]
        assert spec["command"][:2] == ["python", "-m"] and "workingDir" not in spec, manifest
    step = re.search(r"python -m compileall (.+?)\s*(?:\\|&&|$)", text, re.M)
    assert step, "the image never runs `python -m compileall`: every pod would compile eegfm at start-up"
    compile_args = step.group(1).split()
    packages = [arg for arg in compile_args if not arg.startswith("-")]
    copied = {source for source in re.findall(r"^COPY (\S+) \1$", text, re.M) if (REPO / source).is_dir()}
    assert copied and copied <= set(packages), copied - set(packages)

    for package in packages:  # the image's layout: the packages side by side in WORKDIR
        shutil.copytree(REPO / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    modules = "pipelines.preprocess, serving.server"
    # Without the step, the image's PYTHONDONTWRITEBYTECODE makes every start compile eegfm.
    assert len(_compiled_from_source(tmp_path, modules)) > 10
    subprocess.run([sys.executable, "-m", "compileall", *compile_args], cwd=tmp_path,
                   env={**os.environ, **_image_env()}, check=True, capture_output=True)
    assert _compiled_from_source(tmp_path, modules) == []
