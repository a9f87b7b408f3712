"""eegfm-serve against its own OpenAPI description: schemathesis generates requests from
/openapi.json (bodies that fit it and bodies that do not), and none may get a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.serving.serve_helpers import AUTH, serving


@pytest.fixture(scope="module")
def server(finetuned, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text(AUTH["Authorization"].split()[1] + "\n")
    with serving(["--model", str(finetuned), "--max_upload_mb", "2", "--api_keys_file", str(keys)]) as running:
        yield running


def _no_server_error(server, mode: GenerationMode, examples: int, headers: dict) -> dict[str, set[int]]:
    """Every operation of the server's /openapi.json, ``examples`` generated cases each (``mode``),
    sent with ``headers``; the statuses seen per operation. Fails on any 5xx."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    seen: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        check = _checker(server, operation.label, headers, seen)
        run = given(case=operation.as_strategy(generation_mode=mode))(check)
        run = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(run)
        try:
            run()
        except Unsatisfiable:  # an operation without parameters or body has no request that does not fit
            assert mode == GenerationMode.NEGATIVE
    return seen


def _checker(server, label: str, headers: dict, seen: dict[str, set[int]]):
    def check(case):
        response = case.call(base_url=server.url, headers=headers, timeout=60)
        assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
        seen.setdefault(label, set()).add(response.status_code)

    return check


def test_generated_requests_get_no_server_error(server):
    seen = _no_server_error(server, GenerationMode.POSITIVE, 8, AUTH)
    assert {"GET /health", "GET /ready", "GET /metrics", "GET /v1/model", "POST /v1/predict"} <= set(seen)
    assert seen["GET /v1/model"] == {200}
    assert seen["POST /v1/predict"] and max(seen["POST /v1/predict"]) < 500
    unauthenticated = _no_server_error(server, GenerationMode.POSITIVE, 2, {})
    assert unauthenticated["GET /v1/model"] == {401} and unauthenticated["POST /v1/predict"] == {401}
    negative = _no_server_error(server, GenerationMode.NEGATIVE, 10, AUTH)
    assert {status // 100 for status in negative["POST /v1/predict"]} == {4}


@pytest.mark.slow  # 300 cases an operation, both modes: about a minute on two busy cores
def test_many_generated_requests_fitting_and_not_get_no_server_error(server):
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        seen = _no_server_error(server, mode, 300, AUTH)
        assert "POST /v1/predict" in seen and max(seen["POST /v1/predict"]) < 500
