"""The AWS Terraform in infra/terraform/aws: valid, formatted, and its own mocked tests pass.

Everything runs offline in a temporary copy of the module: the AWS provider comes from the local
mirror in /opt/tf-plugins, and the ``.tftest.hcl`` files plan against ``mock_provider "aws"``, so
no credentials, no network and nothing created. Skipped where Terraform or the mirror is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = REPO_ROOT / "infra" / "terraform" / "aws"
PLUGIN_DIR = Path("/opt/tf-plugins")
STEP_TIMEOUT_S = 110
# The run blocks in tests/*.tftest.hcl at the time of writing; fewer means tests were lost.
MIN_RUNS = 33


def _skip_reason() -> str | None:
    if shutil.which("terraform") is None:
        return "terraform is not on PATH"
    if not PLUGIN_DIR.is_dir():
        return f"no offline provider mirror at {PLUGIN_DIR} (terraform init would need the registry)"
    return None


def _env() -> dict[str, str]:
    """The caller's environment without anything that could change a plan (TF_VAR_*, TF_CLI_ARGS*)
    or reach a real account (AWS_*), and with Terraform's CLI config, prompts and update checks off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_"))}
    env.update(TF_CLI_CONFIG_FILE="/dev/null", TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    return env


def _terraform(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["terraform", *args],
            cwd=workdir,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"terraform {' '.join(args)} did not finish within {STEP_TIMEOUT_S} s: {exc.stdout!r}")


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


@pytest.fixture(scope="module")
def module_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised copy of the module, so no .terraform/ or lock file lands in the repository."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("terraform") / "aws"
    shutil.copytree(
        MODULE,
        workdir,
        ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*", "*.tfplan"),
    )
    init = _terraform(workdir, "init", "-backend=false", "-input=false", "-no-color", f"-plugin-dir={PLUGIN_DIR}")
    assert init.returncode == 0, f"terraform init failed: {_explain(init)}"
    return workdir


def test_validate(module_copy: Path) -> None:
    result = _terraform(module_copy, "validate", "-json", "-no-color")
    report = json.loads(result.stdout)
    assert report["valid"] is True, _explain(result)
    assert report["error_count"] == 0, _explain(result)
    assert report["warning_count"] == 0, _explain(result)
    assert result.returncode == 0, _explain(result)


def test_fmt(module_copy: Path) -> None:
    result = _terraform(module_copy, "fmt", "-check", "-recursive", "-diff", "-no-color")
    assert result.returncode == 0, f"run `terraform fmt -recursive` in {MODULE}: {_explain(result)}"


def test_terraform_tests_pass(module_copy: Path) -> None:
    runs = sum(
        len(re.findall(r'^run\s+"', path.read_text(), flags=re.MULTILINE))
        for path in (module_copy / "tests").glob("*.tftest.hcl")
    )
    assert runs >= MIN_RUNS, f"only {runs} run blocks in {MODULE / 'tests'}, expected at least {MIN_RUNS}"
    result = _terraform(module_copy, "test", "-no-color")
    assert result.returncode == 0, _explain(result)
    assert f"Success! {runs} passed, 0 failed." in result.stdout, _explain(result)
    assert "0 failed" in result.stdout, _explain(result)


def test_example_tfvars_are_accepted(module_copy: Path) -> None:
    """terraform.tfvars.example passes every variable validation and plans like the defaults."""
    result = _terraform(
        module_copy,
        "test",
        "-no-color",
        "-var-file=terraform.tfvars.example",
        "-filter=tests/defaults.tftest.hcl",
    )
    assert result.returncode == 0, _explain(result)
    assert re.search(r"Success! \d+ passed, 0 failed\.", result.stdout), _explain(result)
