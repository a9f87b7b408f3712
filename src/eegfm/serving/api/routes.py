"""The server's routes as the application holds them: the one list every other is read from.

A route's path is written once, where app.py or page.py adds it to the application. The ``route``
label of /metrics and of the access log is the template of the route a request matches
(:func:`matched_route`); the 404 message and the startup line list :func:`endpoints`; the tests
check docs/serving.md's route table against them. Adding a route touches app.py (or page.py) and
docs/serving.md, and nothing here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from starlette.routing import Match

OTHER = "other"
# The tag of the routes scraped and probed every few seconds (/health, /ready, /metrics): counted,
# never written to the access log.
PROBES = "probes"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One route of the app: its path template, its methods (GET for a mount, a folder of files
    under ``path/``), whether it needs an API key, and whether it is a mount."""

    path: str
    methods: tuple[str, ...]
    needs_key: bool
    mount: bool = False


def matched(scope: dict):
    """The app's route that a request's scope matches (a route that answers another method
    included: its 405 is that route's), or None. Matched before the app runs, so a request in
    flight has its route too."""
    router = getattr(scope.get("app"), "router", None)
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return route
    return None


def matched_route(scope: dict) -> str:
    """The path template of :func:`matched`, else :data:`OTHER`: the label set is the app's
    routes, bounded whatever paths clients send."""
    return label(matched(scope))


def label(route) -> str:
    """A matched route's label: its path template, or :data:`OTHER` for None."""
    return OTHER if route is None else route.path


def is_probe(route) -> bool:
    """Whether a matched route is tagged :data:`PROBES`."""
    return PROBES in (getattr(route, "tags", None) or ())


def endpoints(app, needs_key: Callable[[object], bool]) -> tuple[Endpoint, ...]:
    """Every route of ``app`` in the order it was added; ``needs_key(route)`` says whether one
    requires an API key."""
    found = []
    for route in app.router.routes:
        methods = tuple(sorted(m for m in getattr(route, "methods", None) or () if m != "HEAD"))
        found.append(Endpoint(route.path, methods or ("GET",), needs_key(route), mount=not methods))
    return tuple(found)


def listing(found: tuple[Endpoint, ...]) -> str:
    """``POST /v1/predict, ...; GET /, ...``: the paths by method, for a message."""
    by_method: dict[str, list[str]] = {}
    for endpoint in found:
        for method in endpoint.methods:
            by_method.setdefault(method, []).append(endpoint.path)
    order = sorted(by_method, key=lambda m: (m != "POST", m))
    return "; ".join(f"{method} {', '.join(by_method[method])}" for method in order)
