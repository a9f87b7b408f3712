"""checkov over infra/ and .github (.checkov.yaml), offline: no failed check, every framework
scanned something, and every skip carries its reason and is listed in docs/security.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKOV = Path(os.environ.get("CHECKOV", REPO / ".venv-checkov" / "bin" / "checkov"))
SECURITY_DOC = REPO / "docs" / "security.md"
FRAMEWORKS = {"terraform", "kustomize", "dockerfile", "github_actions"}


def _reports(text: str) -> list[dict]:
    """One report per framework. checkov may print its JSON more than once (a report, or a list
    of them, per document); the reports of one framework are the same each time."""
    decoder, reports, at = json.JSONDecoder(), {}, 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        document, at = decoder.raw_decode(text, at)
        reports.update({r["check_type"]: r for r in (document if isinstance(document, list) else [document])})
    return list(reports.values())


@pytest.fixture(scope="module")
def reports() -> list[dict]:
    if not CHECKOV.exists():
        pytest.skip(f"checkov is not installed at {CHECKOV} (make test installs it from requirements/checkov.txt)")
    # No platform key and no downloads; mapping off keeps it from asking for a policy map.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_", "CKV_"))}
    env["BC_SKIP_MAPPING"] = "TRUE"
    done = subprocess.run(
        [str(CHECKOV), "--output", "json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1 = failed checks, asserted below
    return _reports(done.stdout)


def _listed_as(check_type: str, check: dict) -> str:
    """How docs/security.md names a skipped resource: aws_s3_bucket.this["raw"] -> aws_s3_bucket.this,
    overlay:serve:Deployment.eegfm.x -> Deployment.eegfm.x, a Dockerfile -> its path from the repository."""
    if check_type == "dockerfile":
        return "infra" + check["file_path"]
    return re.sub(r"\[.*\]$", "", check["resource"].split(":")[-1])


def test_no_check_fails(reports: list[dict]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for report in reports
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)


def test_every_framework_is_scanned(reports: list[dict]) -> None:
    scanned = {r["check_type"] for r in reports if r["summary"]["passed"] > 0}
    expected = FRAMEWORKS if shutil.which("kubectl") else FRAMEWORKS - {"kustomize"}  # kustomize renders with kubectl
    assert expected <= scanned, f"no passed checks for {sorted(expected - scanned)}"
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports), [r["results"]["parsing_errors"] for r in reports]


def test_every_skip_has_a_reason_and_is_listed_in_the_security_doc(reports: list[dict]) -> None:
    rows = [line for line in SECURITY_DOC.read_text().splitlines() if line.startswith("| CKV")]
    skipped = [(r["check_type"], c) for r in reports for c in r["results"]["skipped_checks"]]
    assert skipped, "no declared skips: the table in docs/security.md would be stale"
    for check_type, check in skipped:
        reason = check.get("check_result", {}).get("suppress_comment", "")
        assert len(reason) >= 30, f"{check['check_id']} on {check['resource']} needs a reason"
        address = _listed_as(check_type, check)
        assert any(row.startswith(f"| {check['check_id']} ") and f"`{address}`" in row for row in rows), (
            f"docs/security.md lists no skip of {check['check_id']} for `{address}`"
        )
