"""The routes of a reviewer's marks (``marks.MarkStore``): ``GET``/``PUT /v1/marks/{recording_id}``,
``GET /v1/marks/{recording_id}/events.tsv`` and ``.../annotations.edf`` (``marks_edf``). Nothing of
a mark is logged: its text may name the patient."""

from __future__ import annotations

import json

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from eegfm.serving.api.marks import MAX_MARKS, MarksError, MarkStore, check_recording_id, parse_marks
from eegfm.serving.api.marks_edf import annotations_edf
from eegfm.serving.api.uploads import UploadError

MAX_BODY = MAX_MARKS * 400 + 1024  # 5000 marks of 200 characters and their numbers, as JSON
MARK = {
    "type": "object",
    "properties": {
        "id": {"type": ["string", "null"], "description": "the server's id (absent or null: a new mark)"},
        "onset_s": {"type": "number", "minimum": 0},
        "duration_s": {"type": "number", "minimum": 0},
        "text": {"type": "string", "minLength": 1, "maxLength": 200},
        "channel": {"type": ["string", "null"], "maxLength": 20, "description": "a derivation or electrode"},
    },
    "required": ["onset_s", "duration_s", "text"],
}
MARKS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"marks": {"type": "array", "items": MARK, "maxItems": MAX_MARKS}},
                    "required": ["marks"],
                }
            }
        },
    }
}


def _checked(recording_id: str) -> str:
    try:
        return check_recording_id(recording_id)
    except MarksError as err:
        raise UploadError(422, str(err)) from None


async def _body(request: Request) -> object:
    """The request's JSON body, at most MAX_BODY bytes (413 past it)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise UploadError(413, f"body: expected at most {MAX_BODY} bytes of JSON ({MAX_MARKS} marks)")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise UploadError(422, 'body: expected JSON {"marks": [...]}') from None


def add_marks(app: FastAPI, store: MarkStore, dependencies: list, responses: dict) -> None:
    """The marks routes on ``app``, each with ``dependencies`` (the API key) and error ``responses``."""
    tags = ["marks"]

    @app.get(
        "/v1/marks/{recording_id}",
        summary="a recording's reviewer marks ([] if none)",
        dependencies=dependencies,
        responses=responses,
        tags=tags,
    )
    async def get_marks(recording_id: str) -> dict:
        marks = await anyio.to_thread.run_sync(store.read, _checked(recording_id))
        return {"recording_id": recording_id, "marks": [m.as_dict() for m in marks]}

    @app.put(
        "/v1/marks/{recording_id}",
        summary="replace a recording's reviewer marks with the list sent (stored on this server only)",
        description="Body {marks: [{id?, onset_s, duration_s, text, channel}]}: the whole list, at most "
        f"{MAX_MARKS}; a mark without an id gets one. The reply is the stored list, by onset. A bad mark is a "
        "422 naming marks[i].field.",
        dependencies=dependencies,
        responses=responses,
        openapi_extra=MARKS_BODY,
        tags=tags,
    )
    async def put_marks(recording_id: str, request: Request) -> JSONResponse:
        _checked(recording_id)
        try:
            marks = parse_marks(await _body(request))
        except MarksError as err:
            raise UploadError(422, str(err)) from None
        stored = await anyio.to_thread.run_sync(store.write, recording_id, marks)
        return JSONResponse({"recording_id": recording_id, "marks": [m.as_dict() for m in stored]})

    @app.get(
        "/v1/marks/{recording_id}/events.tsv",
        summary="a recording's reviewer marks as a BIDS events.tsv (onset, duration, trial_type, channel)",
        dependencies=dependencies,
        responses=responses,
        response_class=Response,
        tags=tags,
    )
    async def events_tsv(recording_id: str) -> Response:
        text = await anyio.to_thread.run_sync(store.tsv, _checked(recording_id))
        return Response(
            text,
            media_type="text/tab-separated-values; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="events.tsv"'},
        )

    @app.get(
        "/v1/marks/{recording_id}/annotations.edf",
        summary="a recording's reviewer marks as an EDF+ annotations-only file (404 without marks)",
        dependencies=dependencies,
        responses={**responses, 404: responses[422]},
        response_class=Response,
        tags=tags,
    )
    async def annotations(recording_id: str) -> Response:
        marks = await anyio.to_thread.run_sync(store.read, _checked(recording_id))
        if not marks:
            raise UploadError(404, "marks: none stored for this recording_id (PUT /v1/marks/{recording_id} first)")
        data = await anyio.to_thread.run_sync(annotations_edf, marks)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": 'attachment; filename="annotations.edf"'},
        )
