"""eegfm-serve's routes (FastAPI): predictions, explanations, EEG traces, the model's description,
probes, metrics, docs, the page.

Every error is a JSON ``{"error": message, "status": code}`` whose message names the field, header or
limit at fault; a request whose body may be unread is answered with ``Connection: close``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from eegfm.core.logs import get_logger
from eegfm.serving.api import auth
from eegfm.serving.api.explaining import MAX_STEPS, MAX_WINDOW, ExplainService
from eegfm.serving.api.jobs import RequestWork, request_work
from eegfm.serving.api.logged import fault
from eegfm.serving.api.marks import MARKS_DIR, MarkStore
from eegfm.serving.api.marks_routes import add_marks
from eegfm.serving.api.metrics import Metrics, MetricsMiddleware
from eegfm.serving.api.page import SecurityHeaders, add_page
from eegfm.serving.api.routes import PROBES, endpoints, listing
from eegfm.serving.api.service import MAX_BATCH_FILES, PredictionService
from eegfm.serving.api.signals import SignalsError, SignalsRequest
from eegfm.serving.api.stopping import STOP, CloseWhenStopping
from eegfm.serving.api.trace_query import trace_view_query
from eegfm.serving.api.traces import MAX_SECONDS as MAX_TRACE_SECONDS
from eegfm.serving.api.traces import MAX_START_S, TraceService, TraceView
from eegfm.serving.api.uploads import UploadError, save_body, upload_extension

log = get_logger(__name__)
# A raw body is a recording file; curl --data-binary sends form-urlencoded unless told otherwise
RAW_TYPES = ("", "application/octet-stream", "application/x-www-form-urlencoded", "application/zip", "application/gzip")
BINARY = {"type": "string", "format": "binary"}
BODY_METHODS = ("POST", "PUT")  # a refusal may leave their body unread
ECHO_HELP = "true: the reply names the recordings by the client's file names and channel labels as recorded"


class ErrorReply(BaseModel):
    error: str
    status: int


# A route that needs an API key depends on auth.authorized: auth.needs_key reads it back.
NEEDS_KEY = [Depends(auth.authorized)]
ERRORS = {code: {"model": ErrorReply} for code in (400, 401, 408, 411, 413, 415, 422)}
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "description": "a recording file (raw body with ?filename=NAME, or a multipart field `file`), "
        "or a JSON signal array",
        "content": {
            "application/octet-stream": {"schema": BINARY},
            "multipart/form-data": {"schema": {"type": "object", "properties": {"file": BINARY}, "required": ["file"]}},
            "application/json": {"schema": SignalsRequest.model_json_schema()},
        },
    }
}
PREDICT_BODY_FILES = {
    "requestBody": {
        "required": True,
        "description": "a recording file (raw body with ?filename=NAME, or a multipart field `file`)",
        "content": {k: v for k, v in PREDICT_BODY["requestBody"]["content"].items() if k != "application/json"},
    }
}
BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": BINARY}},
                    "required": ["files"],
                }
            }
        },
    }
}


def route_listing(app: FastAPI) -> str:
    """The app's routes by method (``POST /v1/predict, ...; GET /, ...``), from the app itself."""
    return listing(endpoints(app, auth.needs_key))


def _echo(value: str) -> bool:
    echo = value.lower()
    if echo not in ("true", "false", "1", "0"):
        raise UploadError(400, "query parameter echo_name: expected true or false")
    return echo in ("true", "1")


def _error(status: int, message: str, headers: dict | None = None, close: bool = False) -> JSONResponse:
    headers = dict(headers or {})
    if close:  # the body may be unread: the connection cannot carry another request
        headers["Connection"] = "close"
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


async def _json_reply(reply: dict[str, Any], status: int = 200) -> JSONResponse:
    """``reply`` as JSON, encoded in a worker thread: a zip's reply of 10,000 entries takes the
    encoder a while, which the event loop (and /health) would wait for."""
    return await anyio.to_thread.run_sync(functools.partial(JSONResponse, reply, status_code=status))


def create_app(
    service: PredictionService, api_keys: frozenset[str] | None, metrics: Metrics, marks_dir: str = MARKS_DIR
) -> FastAPI:
    """The application: ``api_keys`` None serves without authentication (--no-auth); reviewers'
    marks are kept under ``marks_dir`` (created on the first write)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        metrics.worker_stopped()

    app = FastAPI(
        title="eegfm-serve",
        summary="A fine-tuned eegfm model's predictions for EEG recordings.",
        version="1",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.api_keys, app.state.service = api_keys, service
    metrics.set_model(service.description)
    app.add_middleware(CloseWhenStopping)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _add_error_handlers(app)
    _add_probes(app, service, metrics)
    _add_docs(app)
    _add_predict(app, service)
    _add_batch(app, service)
    add_page(app)
    _add_explain(app, ExplainService(service.predictor, service.limits))
    _add_traces(app, TraceService(service.predictor, service.limits))
    add_marks(app, MarkStore(marks_dir), NEEDS_KEY, {code: ERRORS[code] for code in (401, 413, 422)})
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(request: Request, err: UploadError):
        return _error(err.status, err.message, close=request.method in BODY_METHODS)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        message = str(err.detail)
        if err.status_code == 404:
            message = f"no such endpoint; expected {route_listing(request.app)}"
        elif err.status_code == 405:
            # the method is the client's own token, of any length: a few characters say which
            method = request.method if len(request.method) <= 16 else request.method[:16] + "..."
            message = f"method {method}: not allowed here (see /openapi.json)"
        return _error(err.status_code, message, err.headers, close=request.method in BODY_METHODS)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {"loc": ("request",), "msg": "invalid"}
        where = " ".join(str(part) for part in first["loc"])
        got = first.get("input")  # the client's own value, a few characters of it: never logged
        got = f"; got {str(got)[:32]}" if isinstance(got, str | int | float) and first["loc"][0] == "query" else ""
        return _error(422, f"{where}: {first['msg']}{got}", close=request.method in BODY_METHODS)


def _add_probes(app: FastAPI, service: PredictionService, metrics: Metrics) -> None:
    @app.get("/health", summary="liveness: the process answers (no key needed)", tags=[PROBES])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        summary="readiness: the model is loaded and the server is not stopping (no key needed)",
        tags=[PROBES],
        responses={503: {"model": ErrorReply}},
    )
    async def ready():
        # the model is loaded before the port accepts: only stopping makes a server unready
        if STOP.left() < math.inf:
            return _error(503, "the server is stopping")
        return {"status": "ready", "model_version": service.description["model_version"]}

    @app.get("/metrics", summary="Prometheus metrics (no key needed)", response_class=Response, tags=[PROBES])
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/v1/model", summary="the model served", dependencies=NEEDS_KEY, responses={401: ERRORS[401]})
    async def model() -> dict[str, Any]:
        return service.description


def _add_docs(app: FastAPI) -> None:
    """Swagger UI from the swagger-ui-py package's files: the page loads nothing from a CDN."""
    from swagger_ui import core  # its static folder: Swagger UI 5 (OpenAPI 3.1)

    static = Path(core.__file__).parent / "static"
    app.mount("/docs/static", StaticFiles(directory=static), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="eegfm-serve",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )


def _add_predict(app: FastAPI, service: PredictionService) -> None:
    limits = service.limits

    @app.post(
        "/v1/predict",
        summary="predictions for one recording (file, zip of files, or JSON signal array)",
        dependencies=NEEDS_KEY,
        openapi_extra=PREDICT_BODY,
        responses=ERRORS,
    )
    async def predict(
        request: Request,
        filename: Annotated[str, Query(description="a raw body's file name: its extension gives the format")] = "",
        echo_name: Annotated[str, Query(description=ECHO_HELP)] = "false",
    ):
        echo = _echo(echo_name)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        async with request_work(request) as work:
            try:
                if kind == "application/json":
                    status, reply = await _predict_json(request, work, echo)
                elif kind == "multipart/form-data":
                    status, reply = await _predict_multipart(request, work, echo)
                elif kind in RAW_TYPES:
                    status, reply = await _predict_raw(request, work, filename, echo)
                else:
                    raise UploadError(
                        415,
                        f"header Content-Type: expected application/octet-stream (a recording file), "
                        f"multipart/form-data or application/json; got {kind[:60]}",
                    )
            except ValueError as err:
                return _error(400, str(err), close=True)
            except (UploadError, HTTPException):
                raise  # the error handlers answer them
            except Exception as err:  # a fault of the server's: the client learns what failed, the server goes on
                log.error("prediction failed: %s", fault(err))
                return _error(500, f"prediction failed: {type(err).__name__}", close=True)
        return await _json_reply(reply, status)

    async def _predict_raw(request: Request, work: RequestWork, filename: str, echo: bool):
        path, ext = await _save_raw(request, work.folder, filename, limits)
        return await work.run(service.predict_file, path, ext, filename, echo)

    async def _predict_json(request: Request, work: RequestWork, echo: bool):
        guard = limits.body_guard(request.receive, json=True)
        body = work.folder / "body.json"
        await save_body(guard, body)
        try:
            return await work.run(service.predict_json, body, work.folder, echo)
        except SignalsError as err:
            raise UploadError(422, str(err)) from None

    async def _predict_multipart(request: Request, work: RequestWork, echo: bool):
        async with _form(request, limits, max_files=1) as form:
            uploads = [value for value in form.values() if not isinstance(value, str)]
            if len(uploads) != 1 or "file" not in form:
                raise UploadError(422, "multipart field file: expected exactly one recording file in field 'file'")
            [upload] = uploads
            ext = upload_extension(upload.filename or "")
            return await work.run(service.predict_stream, upload.file, work.folder, ext, upload.filename, echo)


def _too_large(length: str, limits) -> str:
    return f"upload of {length} bytes: expected at most {limits.max_upload_bytes} (the server's --max_upload_mb)"


@contextlib.asynccontextmanager
async def _form(request: Request, limits, max_files: int):
    """The multipart form of ``request``, its body read within the upload limits; files closed after."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limits.max_upload_bytes:
        raise UploadError(413, _too_large(length, limits))
    guard = limits.body_guard(request.receive)
    form = await Request(request.scope, guard).form(max_files=max_files, max_fields=16)
    try:
        yield form
    finally:
        await form.close()


def _add_batch(app: FastAPI, service: PredictionService) -> None:
    @app.post(
        "/v1/predict_batch",
        summary="predictions for several recordings: one result per file, each with its own status",
        dependencies=NEEDS_KEY,
        openapi_extra=BATCH_BODY,
        responses=ERRORS,
    )
    async def predict_batch(
        request: Request, echo_name: Annotated[str, Query(description=ECHO_HELP)] = "false"
    ) -> JSONResponse:
        echo = _echo(echo_name)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "multipart/form-data":
            raise UploadError(415, f"header Content-Type: expected multipart/form-data (field files); got {kind[:60]}")
        async with request_work(request) as work, _form(request, service.limits, MAX_BATCH_FILES) as form:
            uploads = [value for _, value in form.multi_items() if not isinstance(value, str)]
            if not uploads:
                raise UploadError(422, "multipart field files: expected one or more recording files")
            results = [await _batch_entry(service, work, i, upload, echo) for i, upload in enumerate(uploads, 1)]
        return await _json_reply({"model": service.description, "results": results})


async def _batch_entry(service: PredictionService, work: RequestWork, index: int, upload, echo: bool) -> dict:
    """One file's result: its status and recordings, or its status and error; its files removed after."""
    entry: dict[str, Any] = {"index": index, **({"filename": upload.filename} if echo else {})}
    folder = work.folder / str(index)
    folder.mkdir()
    try:
        ext = upload_extension(upload.filename or "")
        status, reply = await work.run(service.predict_stream, upload.file, folder, ext, upload.filename, echo)
        entry.update(status=status, recordings=reply["recordings"])
        entry.update({key: reply[key] for key in ("error", "ignored") if key in reply})
    except UploadError as err:
        if work.cancelled.is_set():  # the client left or the server is stopping: no other file either
            raise
        entry.update(status=err.status, error=err.message)
    except ValueError as err:
        entry.update(status=400, error=str(err))
    except Exception as err:  # a fault of the server's: this file's entry says so, the others are answered
        log.error("prediction failed: %s", fault(err))
        entry.update(status=500, error=f"prediction failed: {type(err).__name__}")
    finally:
        await work.remove(folder)
    return entry


def _add_explain(app: FastAPI, explainer: ExplainService) -> None:
    @app.post(
        "/v1/explain",
        summary="one window of a recording explained: integrated gradients per class over channels x time, "
        "and whether the explanation is reliable",
        dependencies=NEEDS_KEY,
        openapi_extra=PREDICT_BODY_FILES,
        responses=ERRORS,
    )
    async def explain(
        request: Request,
        window: Annotated[
            int,
            Query(ge=0, le=MAX_WINDOW, description="the window's index: its entry in /v1/predict's window_predictions"),
        ],
        filename: Annotated[str, Query(description="a raw body's file name: its extension gives the format")] = "",
        steps: Annotated[
            int, Query(ge=2, le=MAX_STEPS, description="integrated-gradient points per piece of the path")
        ] = 8,
        resolution_s: Annotated[
            float, Query(ge=0.05, le=10.0, allow_inf_nan=False, description="the maps' time bins (seconds)")
        ] = 0.25,
    ):
        work = functools.partial(explainer.explain_file, window=window, steps=steps, resolution_s=resolution_s)
        return await _answer_upload(request, filename, explainer.limits, "explanation", work)


def _add_traces(app: FastAPI, tracer: TraceService) -> None:
    @app.post(
        "/v1/traces",
        summary="a span of a recording's EEG in a review montage, from the samples the model saw",
        description="The derivations of a montage (double banana by default; referential, the model's own "
        "input; average; transverse; custom) of the pipeline's preprocessed 19-channel 256 Hz windows, for at "
        f"most {MAX_TRACE_SECONDS:g} s from start_s: each derivation's samples as base64 little-endian int16 "
        "(value in µV = integer x encoding.scale_uv; encoding.missing where no window holds the sample), "
        "with its group (chain) and the stretches where it involves an interpolated electrode and why. "
        "Display filters (lff, hff, notch) change the drawn samples only and can only narrow the pipeline's "
        "band (filters.pipeline). Also: the recording's auxiliary channels (extra, named by kind, each with "
        "its own scale), its own annotations, its start (recorded_at: for the uploader only) and recording_id "
        "(the key of /v1/marks). Same upload as /v1/explain.",
        dependencies=NEEDS_KEY,
        openapi_extra=PREDICT_BODY_FILES,
        responses=ERRORS,
    )
    async def traces(
        request: Request,
        view: Annotated[TraceView, Depends(trace_view_query)],
        start_s: Annotated[
            float,
            Query(
                ge=0, le=MAX_START_S, allow_inf_nan=False, description="the span's start, seconds into the recording"
            ),
        ] = 0.0,
        seconds: Annotated[
            float,
            Query(
                gt=0,
                le=MAX_TRACE_SECONDS,
                allow_inf_nan=False,
                description="the span's length in seconds (clipped at the end)",
            ),
        ] = 10.0,
        filename: Annotated[str, Query(description="a raw body's file name: its extension gives the format")] = "",
    ):
        work = functools.partial(tracer.traces_file, start_s=start_s, seconds=seconds, view=view)
        return await _answer_upload(request, filename, tracer.limits, "traces", work)


async def _answer_upload(request: Request, filename: str, limits, what: str, work) -> JSONResponse:
    """``work(path, ext)``'s reply for the recording uploaded with ``request`` (multipart field
    ``file``, or a raw body named by ``filename``), saved in a folder removed afterwards."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    async with request_work(request) as job:
        try:
            path, ext = await _saved_upload(request, kind, job.folder, filename, service_limits=limits)
            reply = await job.run(work, path, ext)
        except ValueError as err:
            return _error(400, str(err), close=True)
        except (UploadError, HTTPException):
            raise
        except Exception as err:  # a fault of the server's: the client learns what failed
            log.error("%s failed: %s", what, fault(err))
            return _error(500, f"{what} failed: {type(err).__name__}", close=True)
    return await _json_reply(reply)


async def _saved_upload(request: Request, kind: str, folder: Path, filename: str, service_limits) -> tuple[Path, str]:
    """A recording upload (multipart field ``file``, or a raw body named by ``filename``) saved in
    ``folder``; its path and extension."""
    if kind == "multipart/form-data":
        async with _form(request, service_limits, max_files=1) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise UploadError(422, "multipart field file: expected exactly one recording file in field 'file'")
            ext = upload_extension(upload.filename or "")
            path = folder / f"upload{ext}"
            with path.open("wb") as out:
                await anyio.to_thread.run_sync(shutil.copyfileobj, upload.file, out, 1 << 20)
            return path, ext
    if kind not in RAW_TYPES:
        raise UploadError(
            415, f"header Content-Type: expected multipart/form-data or application/octet-stream; got {kind[:60]}"
        )
    return await _save_raw(request, folder, filename, service_limits)


async def _save_raw(request: Request, folder: Path, filename: str, limits) -> tuple[Path, str]:
    """A raw body (a recording file named by ``filename``) saved in ``folder``; its path and extension."""
    if not filename:
        raise UploadError(
            400,
            "query parameter filename: expected the recording's file name, whose extension gives "
            "its format (e.g. ?filename=recording.edf)",
        )
    ext = upload_extension(filename)
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise UploadError(411, "header Content-Length: expected the upload's size in bytes")
    if int(length) > limits.max_upload_bytes:
        raise UploadError(413, _too_large(length, limits))
    path = folder / f"upload{ext}"
    guard = limits.body_guard(request.receive)
    await save_body(guard, path, int(length))
    return path, ext
