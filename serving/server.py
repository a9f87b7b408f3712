"""``eegfm-serve``: a fine-tuned model behind an HTTP API (standard library server, JSON replies).

    eegfm-serve --model outputs/demo/finetune --port 8080
    curl --data-binary @recording.edf "http://127.0.0.1:8080/v1/predict?filename=recording.edf"

Endpoints:

- ``GET /health``: ``{"status": "ok"}`` once the model is loaded (a readiness probe).
- ``GET /v1/model``: labels, head, temperature, window and stride, channels, backend, model version,
  MC-dropout passes and the recommendation rules.
- ``POST /v1/predict?filename=NAME``: the body is one recording file (EDF, BDF, FIF, EEGLAB
  ``.set`` with its data inside, HMS ``.parquet``, ...), its format taken from NAME's extension;
  or a ``.zip`` of a recording made of several files (BrainVision ``.vhdr``/``.vmrk``/``.eeg``,
  EEGLAB ``.set``/``.fdt``), or of several recordings. The reply is ``{"model": ...,
  "recordings": [...]}``: per recording the summary ``eegfm-predict`` writes to recordings.json
  plus ``window_predictions`` (start, length, outputs in label order, artifact score, interpolated
  channels, and the class, probabilities, confidence, uncertainty, clinical recommendation and
  model version: ``serving/prediction.schema.json``). Optional ``stride_seconds=S`` is not
  accepted per request: start the server with it.
  A recording is named in the reply by its index and a keyed token (``file-<hex>.edf``, a random key
  per server unless ``--pseudonym_key_file``), and a channel label that is no electrode, reference or
  auxiliary signal by ``chan-<hex>``; ``echo_name=true`` gives back the client's file name (and the
  members' names in a zip) and the labels as recorded.

Status codes: 200 with at least one recording scored; 422 when the file was read but every
recording in it is quarantined (the body says at which stage and why); 400 for a missing or unknown
filename extension, a zip that is not one, or one with unsafe member paths; 411 without a
Content-Length; 413 above ``--max_upload_mb``; 404 and 405 elsewhere.

SIGTERM (Kubernetes stopping the pod) stops the server accepting; the requests in flight are
answered (with ``Connection: close``) and the process exits 0.

The upload is written to a private temporary folder as ``upload.<ext>`` and deleted after: the
client's file name (which may carry a patient's name) is echoed in its own reply only with
``echo_name=true``, never logged; the access log has method, path without query, status and size.
Requests are served by threads, the model one request at a time (a lock): one process per CPU
socket or GPU scales it out.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import urllib.parse
import zipfile
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from eegfm.core.config import ConfigError
from eegfm.core.logs import get_logger, setup_logging
from eegfm.pipelines.datasets import RECORDING_EXTENSIONS
from eegfm.pipelines.deid import PseudonymKeyError, load_key
from eegfm.serving.predict import build_parser as predict_parser
from eegfm.serving.predict import predict_config

log = get_logger(__name__)
CHUNK = 1 << 20
UNZIP_FACTOR = 8  # EEG compresses about 2-4x; more than this is not a recording
ACCEPTED = tuple(sorted({*RECORDING_EXTENSIONS, ".zip"} - {".mff", ".vhdr"}))  # those two are never one file
# eegfm-predict's options about inputs and outputs; the rest configure the served predictor too
NOT_SERVED = ("help", "input", "output", "dataset", "site", "no_plots", "submission", "keep_paths")


def upload_extension(filename: str) -> str:
    """The recording format a client's file name says, or ValueError naming what is accepted."""
    name = filename.strip().lower()
    for ext in sorted(ACCEPTED, key=len, reverse=True):
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    raise ValueError(
        f"filename: expected a name ending in one of {', '.join(ACCEPTED)} (its "
        "extension says the format; a recording of several files goes in a .zip)"
    )


def unpack_zip(archive: Path, folder: Path, max_bytes: int) -> None:
    """Extract ``archive`` into ``folder``; ValueError for a bad zip, a member that would land
    outside it (absolute paths, ``..``), or more than ``max_bytes`` unpacked (a zip bomb)."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            unpacked = sum(member.file_size for member in zipped.infolist())
            if unpacked > max_bytes:
                raise ValueError(
                    f"the zip unpacks to {unpacked} bytes; expected at most {max_bytes} "
                    f"({UNZIP_FACTOR}x the server's --max_upload_mb)"
                )
            root = folder.resolve()
            for member in zipped.infolist():
                target = (folder / member.filename).resolve()
                if not target.is_relative_to(root):
                    raise ValueError(  # the member's name is not echoed: it may name the patient
                        "a zip member: expected a path inside the archive; one is absolute or goes above it (..)"
                    )
            zipped.extractall(folder)
    except zipfile.BadZipFile as err:
        raise ValueError(f"the upload is not a zip archive ({err})") from None


class PredictionServer(ThreadingHTTPServer):
    # server_close() waits for requests in flight: a pod told to stop (SIGTERM) answers them first
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], predictor, max_upload_bytes: int) -> None:
        super().__init__(address, _Handler)
        self.predictor, self.max_upload_bytes = predictor, max_upload_bytes
        self.model_lock = threading.Lock()
        self.stopping = False  # set on SIGTERM: answers close their connections

    def stop(self) -> None:
        """Stop accepting; requests in flight are answered (``server_close`` waits for them)."""
        self.stopping = True
        threading.Thread(target=self.shutdown, daemon=True).start()

    def predict_upload(self, filename: str, body, length: int, echo_name: bool = False) -> tuple[int, dict[str, Any]]:
        """Status and reply for an uploaded file of ``length`` bytes read from ``body``; the recordings named
        by index and token, their non-electrode labels by token, unless ``echo_name``."""
        ext = upload_extension(filename)
        with tempfile.TemporaryDirectory(prefix="eegfm-upload-") as tmp:
            folder = Path(tmp) / "upload"
            folder.mkdir()
            path = folder / f"upload{ext}"
            left = length
            with path.open("wb") as out:
                while left:
                    chunk = body.read(min(CHUNK, left))
                    if not chunk:
                        raise ValueError(f"the upload ended after {length - left} of its {length} bytes")
                    out.write(chunk)
                    left -= len(chunk)
            if ext == ".zip":
                unpack_zip(path, folder / "files", UNZIP_FACTOR * self.max_upload_bytes)
                path.unlink()
            target = str(folder / "files") if ext == ".zip" else str(path)
            with self.model_lock:
                try:
                    recordings = list(self.predictor.predict([target], redact=not echo_name))
                except FileNotFoundError:
                    raise ValueError("the upload holds no recording file") from None
        for recording in recordings if echo_name else ():  # as the client knows them, not by the temporary path
            inside = recording.input[len(target) :].lstrip("/")
            recording.input = f"{filename}/{inside}" if ext == ".zip" else filename
        reply = {"model": self.predictor.describe(), "recordings": [r.as_dict() for r in recordings]}
        status = HTTPStatus.OK if any(r.status == "processed" for r in recordings) else HTTPStatus.UNPROCESSABLE_ENTITY
        return status, reply


class _Handler(BaseHTTPRequestHandler):
    server: PredictionServer
    server_version = "eegfm-serve"
    protocol_version = "HTTP/1.1"
    timeout = 15  # seconds a kept-alive connection may idle (or an upload stall) before it is closed

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # replaced by _log: the default line holds the query string (a file name)

    def _log(self, status: int, size: int) -> None:
        log.info("%s %s %d %d bytes", self.command, urllib.parse.urlsplit(self.path).path, status, size)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = (json.dumps(body) + "\n").encode()
        if self.server.stopping:
            self.close_connection = True
        self.send_response(status)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self._log(status, len(data))

    def _error(self, status: int, message: str) -> None:
        self.close_connection = True  # the body may be unread
        self._reply(status, {"error": message, "status": int(status)})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urllib.parse.urlsplit(self.path).path
        if path == "/health":
            self._reply(HTTPStatus.OK, {"status": "ok"})
        elif path == "/v1/model":
            self._reply(HTTPStatus.OK, self.server.predictor.describe())
        elif path == "/v1/predict":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "POST a recording to /v1/predict?filename=NAME")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no endpoint {path}; expected /health, /v1/model or /v1/predict")

    def do_POST(self) -> None:  # noqa: N802
        parts = urllib.parse.urlsplit(self.path)
        if parts.path != "/v1/predict":
            self._error(HTTPStatus.NOT_FOUND, f"no endpoint {parts.path}; expected POST /v1/predict?filename=NAME")
            return
        query = urllib.parse.parse_qs(parts.query)
        filename = (query.get("filename") or [""])[0]
        echo = (query.get("echo_name") or ["false"])[0].lower()
        if echo not in ("true", "false", "1", "0"):
            self._error(HTTPStatus.BAD_REQUEST, "query parameter echo_name: expected true or false")
            return
        if not filename:
            self._error(
                HTTPStatus.BAD_REQUEST,
                "query parameter filename: expected the recording's file name, "
                "whose extension gives its format (e.g. /v1/predict?filename=recording.edf)",
            )
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._error(HTTPStatus.LENGTH_REQUIRED, "header Content-Length: expected the upload's size in bytes")
            return
        length = int(length)
        if length > self.server.max_upload_bytes:
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"upload of {length} bytes: expected at most {self.server.max_upload_bytes} "
                "(the server's --max_upload_mb)",
            )
            return
        try:
            status, reply = self.server.predict_upload(filename, self.rfile, length, echo_name=echo in ("true", "1"))
        except ValueError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err))
            return
        except Exception as err:  # the server keeps serving; the client learns what failed
            log.exception("prediction failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"prediction failed: {type(err).__name__}")
            return
        self._reply(status, reply)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eegfm-serve",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a fine-tuned eegfm model over HTTP.",
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (0.0.0.0 for every interface: put TLS and authentication "
        "in front of it, it has neither)",
    )
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free one, printed at start)")
    parser.add_argument("--max_upload_mb", type=float, default=2048.0, help="largest upload accepted, MB")
    for action in predict_parser()._actions:
        if action.dest in NOT_SERVED:
            continue
        kwargs = {"help": action.help, "default": action.default, "required": action.required}
        if isinstance(action, argparse._StoreTrueAction):
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=action.type, choices=action.choices)
        parser.add_argument(*action.option_strings, **kwargs)
    return parser


def make_server(argv: list[str] | None = None) -> PredictionServer:
    from eegfm.serving.predictor import Predictor  # the model and training's loader: not for --help

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_upload_mb <= 0:
        parser.error(f"--max_upload_mb: expected a positive size; got {args.max_upload_mb}")
    try:
        key = load_key(args.pseudonym_key_file) if args.pseudonym_key_file else None
        predictor = Predictor(args.model, predict_config(args, parser), name_key=key)
    except (ConfigError, FileNotFoundError, PseudonymKeyError) as err:
        parser.error(str(err))
    return PredictionServer((args.host, args.port), predictor, int(args.max_upload_mb * 2**20))


def main(argv: list[str] | None = None) -> int:
    setup_logging("INFO")
    server = make_server(argv)
    host, port = server.server_address[:2]

    def stop(signum, _frame) -> None:
        # Kubernetes sends SIGTERM, then SIGKILL after the grace period: stop accepting, answer what
        # is in flight (server_close), exit 0. shutdown() waits for serve_forever, so not from here.
        log.info("%s: finishing the requests in flight, then stopping", signal.Signals(signum).name)
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    print(
        f"eegfm-serve: {server.predictor.backend.name} model on http://{host}:{port} "
        f"(POST /v1/predict?filename=NAME; GET /v1/model, /health); Ctrl-C or SIGTERM stops",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
