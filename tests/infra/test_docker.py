"""The cluster image's Dockerfile, read against the repository (no Docker engine runs here, so
the image itself is not built by the tests): what it copies exists, every package setup.py ships
is copied, its Python and torch are the project's, and its user is the one the pods run as."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"


def test_the_image_copies_every_shipped_package_and_installs_the_pinned_stack():
    text = DOCKERFILE.read_text()
    copied = re.findall(r"^COPY (\S+)", text, re.M)
    for source in copied:
        assert (REPO / source).exists(), source
    assert 'package_dir={"": "src"}' in (REPO / "setup.py").read_text() and "src" in copied  # every layer
    python = re.search(r"python_requires=\">=(\d+\.\d+)", (REPO / "setup.py").read_text()).group(1)
    assert re.search(rf"^FROM python:{re.escape(python)}-", text, re.M)
    torch = re.search(r"^torch==(\S+)$", (REPO / "requirements" / "lock.txt").read_text(), re.M).group(1)
    assert f"pip install torch=={torch}" in text and "--constraint requirements/lock.txt" in text


def test_the_image_user_is_the_one_the_pods_run_as():
    uid = re.search(r"^USER (\d+)", DOCKERFILE.read_text(), re.M).group(1)
    component_file = REPO / "infra" / "kubernetes" / "components" / "image" / "kustomization.yaml"
    component = yaml.safe_load(component_file.read_text())
    patches = [yaml.safe_load(patch["patch"]) for patch in component["patches"]]
    operations = [op for patch in patches if isinstance(patch, list) for op in patch]  # JSON patches
    [pod_context] = [op["value"] for op in operations if op["path"] == "/spec/template/spec/securityContext"]
    assert str(pod_context["runAsUser"]) == uid


def test_the_build_context_leaves_out_the_environment_and_outputs():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "outputs", ".git"} <= set(ignored)


def test_the_pods_import_the_installed_package_not_the_workdir_copies():
    # `python -m eegfm...` from WORKDIR finds no eegfm folder there, so the pods import what pip
    # installed (and compiled) in site-packages; a generic top-level name could be shadowed.
    text = DOCKERFILE.read_text()
    for manifest in ("preprocess/job.yaml", "serve/deployment.yaml"):
        container = yaml.safe_load((REPO / "infra" / "kubernetes" / manifest).read_text())
        [spec] = container["spec"]["template"]["spec"]["containers"]
        assert spec["command"][:2] == ["python", "-m"] and spec["command"][2].startswith("eegfm."), manifest
    assert not re.search(r"^COPY \S+ eegfm\b", text, re.M)
    assert "compileall" not in text  # pip compiles site-packages at install


def test_every_registry_image_has_a_version_tag():
    # checkov's CKV_DOCKER_7 is skipped in this Dockerfile (it reads the stage names of
    # `FROM base-${FLAVOR}` as untagged images): the same rule, knowing the stages
    text = DOCKERFILE.read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", text, re.M))
    for image in re.findall(r"^FROM (\S+)", text, re.M):
        if image.replace("${FLAVOR}", "cpu") in stages and image.replace("${FLAVOR}", "gpu") in stages:
            continue
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "/" not in tag, image
