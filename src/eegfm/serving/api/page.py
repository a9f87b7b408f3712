"""The page for one recording (``/``, its files under ``/static``) and the headers every reply carries
against framing, sniffing and leaking the address.

The page holds an API-key field: another site must not frame it (clickjacking), and nothing but the
page's own files may run in it. Its policy allows scripts, styles and requests from this origin
only: no inline script or style attribute (the page's files have none: their colours are CSS classes
or set through the DOM), no framing (``frame-ancestors 'none'``, and ``X-Frame-Options: DENY`` for
older browsers), no plug-ins, no ``<base>``. Other replies (JSON, Swagger UI's page at ``/docs``,
whose script is inline) may not be framed either.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from eegfm.serving.api.routes import matched_route

STATIC = Path(__file__).parent / "static"
# The page's routes, written here once: the page and the mount of its files.
PAGE_ROUTES = ("/", "/static")
PAGE_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # the page's icon is an empty data: URL (no request for /favicon.ico)
        "connect-src 'self'",  # /v1/model, /v1/predict, /v1/explain, /v1/traces
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    )
)
OTHER_POLICY = "frame-ancestors 'none'"
EVERY_REPLY = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def add_page(app: FastAPI) -> None:
    """The page for one recording (``/``) and its scripts and styles (``/static``): all local, no key
    needed to load them (the page sends the key it is given with its requests)."""
    page_path, files_path = PAGE_ROUTES
    app.mount(files_path, StaticFiles(directory=STATIC), name="page")

    @app.get(page_path, include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


def is_page(scope: dict) -> bool:
    """Whether a request is for the page or one of its files (the route it matches)."""
    return matched_route(scope) in PAGE_ROUTES


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP reply, the page's policy on the page's."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = (PAGE_POLICY if is_page(scope) else OTHER_POLICY).encode()
        added = (*EVERY_REPLY, (b"content-security-policy", policy))
        names = {name for name, _ in added}

        async def secured_send(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*headers, *added]}
            await send(message)

        await self.app(scope, receive, secured_send)
