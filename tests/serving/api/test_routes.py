"""The routes as the app holds them are the one list: the /metrics labels, the 404 message and the
startup line read them, and docs/serving.md's route table and the Grafana dashboard must agree."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from eegfm.serving.api import auth
from eegfm.serving.api.app import create_app, route_listing
from eegfm.serving.api.metrics import Metrics
from eegfm.serving.api.page import is_page
from eegfm.serving.api.routes import OTHER, endpoints, matched_route

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def app():
    description = {"model_version": "sha256:0", "backend": "torch", "head": "classifier"}
    service = SimpleNamespace(description=description, predictor=None, limits=None)
    return create_app(service, frozenset({"k" * 16}), Metrics())


def _scope(app, method: str, path: str) -> dict:
    return {"type": "http", "app": app, "method": method, "path": path, "root_path": "", "headers": []}


def test_a_request_is_labelled_by_the_route_it_matches(app):
    for endpoint in endpoints(app, auth.needs_key):
        path = endpoint.path + "/a.js" if endpoint.mount else endpoint.path
        assert matched_route(_scope(app, endpoint.methods[0], path)) == endpoint.path
    assert matched_route(_scope(app, "GET", "/static/page.js")) == "/static"
    assert matched_route(_scope(app, "GET", "/docs/static/swagger-ui.css")) == "/docs/static"
    assert matched_route(_scope(app, "M0001", "/")) == "/"  # a 405 is its route's
    assert matched_route(_scope(app, "GET", "/patients/Jane_Roe")) == OTHER
    assert is_page(_scope(app, "GET", "/")) and is_page(_scope(app, "GET", "/static/page.css"))
    assert not is_page(_scope(app, "GET", "/docs"))


def test_the_listing_names_every_route_and_a_key_is_what_the_openapi_description_asks_for(app):
    found = {e.path: e for e in endpoints(app, auth.needs_key)}
    assert {"/v1/predict", "/v1/explain", "/v1/traces", "/v1/model", "/health"} <= set(found)
    assert all(path in route_listing(app) for path in found)
    described = app.openapi()["paths"]
    for path, operations in described.items():
        for operation in operations.values():
            assert bool(operation.get("security")) == found[path].needs_key, path
    assert {path for path, e in found.items() if e.needs_key} <= set(described)  # every keyed route is described


def test_the_docs_route_table_is_the_apps(app):
    """Every ``METHOD /path`` of docs/serving.md's route table, with its key column, is a route of the
    app, and every route of the app but the mounts of files is in the table."""
    text = (REPO / "docs" / "serving.md").read_text()
    table = text.split("### Routes", 1)[1].split("\n\n", 2)[1]
    documented = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for method, path in re.findall(r"`([A-Z]+) (/[^`?]*)", cells[0]):
            documented[(method, path)] = cells[1] == "yes"
    held = {
        (method, e.path): e.needs_key
        for e in endpoints(app, auth.needs_key)
        if not e.mount  # folders of files, described in the text
        for method in e.methods
    }
    assert documented == held


def test_the_dashboard_names_only_routes_of_the_app(app):
    dashboard = (REPO / "infra" / "grafana" / "eegfm-serve.json").read_text()
    named = set(re.findall(r'route=\\?"([^"\\]+)', json.dumps(json.loads(dashboard))))
    assert named and named <= {e.path for e in endpoints(app, auth.needs_key)} | {OTHER}


def test_only_the_probes_stay_out_of_the_access_log(app):
    from eegfm.serving.api.routes import is_probe, matched

    quiet = {e.path for e in endpoints(app, auth.needs_key) if is_probe(matched(_scope(app, "GET", e.path)))}
    assert quiet == {"/health", "/ready", "/metrics"}
