"""``eegfm-serve``: a fine-tuned model behind an HTTP API (FastAPI on uvicorn, JSON replies).

    eegfm-serve --model outputs/demo/finetune --api_keys_file keys.txt --port 8080
    curl -H "Authorization: Bearer $KEY" -H "Content-Type: application/octet-stream" \\
      --data-binary @recording.edf "http://127.0.0.1:8080/v1/predict?filename=recording.edf"

Routes: docs/serving.md has the table, /openapi.json and /docs describe them, and the server lists
them as it starts (from the app: ``api.routes``). ``POST /v1/predict`` takes one recording: a raw
body with ``?filename=NAME`` (its extension gives the format; a ``.zip`` holds a recording of several
files, or several recordings), a multipart field ``file``, or JSON ``{"signals": [[µV ...] ...],
"sfreq": 256, "channel_names": [...]}``; the reply is ``{"model": ..., "recordings": [...]}``
(inference/prediction.schema.json per window). The probes, ``/metrics``, the docs and the page need no
API key.

API keys: ``Authorization: Bearer KEY`` (the scheme in any case, as RFC 7235 allows), a key of
``--api_keys_file`` (one per line) or of ``EEGFM_API_KEYS`` (comma separated); without keys the
server refuses to start unless ``--no-auth``.

Status codes: 200 with at least one recording scored; 422 when the upload holds no recording or every
one is quarantined (the body says at which stage and why, and lists what else it held), a JSON
field is wrong or a query parameter is out of range or not finite; 400 for a bad file name, zip or
query; 401 without a valid key; 408 when an upload stalls (``--upload_timeout``), falls below
``--min_upload_kb_per_s`` on average, or a connection's headers do not arrive in
``--header_timeout``; 411 without Content-Length; 413 above ``--max_upload_mb`` or when an upload
would unpack past 8x that or its members together past the decompression ratio cap
(zip, gzip, parquet bombs), or a zip holds more than 10,000 members; 415 for another content type;
503 past ``--limit_concurrency`` or when the server stops before a request ends.

A recording is named in the reply by its index and a keyed token (``file-<hex>.edf``, a random key
per server unless ``--pseudonym_key_file``) unless ``echo_name=true``; the log names the route, never
the client's file name or query. A request's work stops, and its files go, when its client
disconnects. SIGTERM stops accepting, answers the requests in flight (with ``Connection: close``)
within ``--graceful_timeout`` seconds, abandoning the work of those it cannot finish, and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import sys
import tempfile

from eegfm.core.logs import get_logger, setup_logging
from eegfm.core.machine import Cpus, CpuUse, cpu_use_line
from eegfm.core.threads import fair_threads
from eegfm.serving.api.marks import MARKS_DIR  # the standard library only: --help stays quick

log = get_logger(__name__)
ARGV_ENV = "EEGFM_SERVE_ARGV"  # the command line, for the workers of --workers > 1


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
        help="address to listen on (0.0.0.0: every interface; then serve TLS with --tls_certfile or put it in front)",
    )
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free one, printed at start)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving the port, each loading the model and scoring one batch at a time on its share "
        "of the cores (--threads)",
    )
    parser.add_argument("--max_upload_mb", type=float, default=2048.0, help="largest upload accepted, MB")
    parser.add_argument(
        "--upload_timeout", type=float, default=30.0, help="seconds an upload may send nothing before it gets 408"
    )
    parser.add_argument(
        "--min_upload_kb_per_s",
        type=float,
        default=16.0,
        help="an upload must average at least this many KB/s once its first --upload_timeout seconds have passed, "
        "or it gets 408 (a body trickled a byte at a time cannot hold a connection); 0: no deadline",
    )
    parser.add_argument(
        "--header_timeout",
        type=float,
        default=10.0,
        help="seconds a connection has to send a request's headers (slow clients get 408 and are closed)",
    )
    parser.add_argument(
        "--timeout_keep_alive", type=int, default=5, help="seconds an idle kept-alive connection stays open"
    )
    parser.add_argument(
        "--limit_concurrency",
        type=int,
        default=512,
        help="connections and requests at once per worker; past it a request gets 503",
    )
    parser.add_argument(
        "--graceful_timeout",
        type=float,
        default=30.0,
        help="seconds SIGTERM waits for the requests in flight before closing them",
    )
    parser.add_argument(
        "--marks_dir",
        default=MARKS_DIR,
        help="folder of the reviewers' marks (/v1/marks: a BIDS events.tsv per recording; created on the first "
        "mark; readable by this user only)",
    )
    _add_auth_options(parser)
    _add_tls_options(parser)
    from eegfm.serving.predict import add_predictor_options  # torch: imported with the predictor's options

    add_predictor_options(parser, ", divided among --workers")
    return parser


def _add_tls_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls_certfile", default=None, help="PEM certificate (chain) to serve HTTPS with; needs --tls_keyfile"
    )
    parser.add_argument("--tls_keyfile", default=None, help="PEM private key of --tls_certfile")


def _add_auth_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api_keys_file",
        default=None,
        help="a file of API keys, one per line ('#' comments); clients send 'Authorization: Bearer KEY'. "
        "EEGFM_API_KEYS (comma separated) adds keys",
    )
    parser.add_argument(
        "--no-auth",
        "--no_auth",
        dest="no_auth",
        action="store_true",
        help="serve predictions without API keys (logged as a warning): only behind an authenticating proxy",
    )


def _checked_args(parser: argparse.ArgumentParser, argv: list[str] | None):
    from eegfm.core.config import ConfigError
    from eegfm.serving.api.auth import ApiKeyError, load_api_keys
    from eegfm.serving.api.service import ServeLimits

    args = parser.parse_args(argv)
    try:
        args.limits = ServeLimits(args.max_upload_mb, args.upload_timeout, min_upload_kb_per_s=args.min_upload_kb_per_s)
    except ConfigError as err:
        parser.error(f"--{err}")
    for name in ("workers", "limit_concurrency", "timeout_keep_alive"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected a positive whole number; got {getattr(args, name)}")
    for name in ("header_timeout", "graceful_timeout"):
        if not 0 < getattr(args, name) <= 3600:
            parser.error(f"--{name}: expected seconds in (0, 3600]; got {getattr(args, name)}")
    _check_tls(parser, args)
    try:
        keys = load_api_keys(args.api_keys_file)
    except ApiKeyError as err:
        parser.error(str(err))
    if not keys and not args.no_auth:
        parser.error("no API keys: give --api_keys_file or EEGFM_API_KEYS, or --no-auth to serve without")
    args.api_keys = None if args.no_auth else keys
    return args


def _check_tls(parser: argparse.ArgumentParser, args) -> None:
    """Both TLS files or neither, and a certificate and key that load and belong together."""
    if (args.tls_certfile is None) != (args.tls_keyfile is None):
        parser.error("--tls_certfile and --tls_keyfile: expected both (HTTPS) or neither (HTTP)")
    if args.tls_certfile is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(args.tls_certfile, args.tls_keyfile)
    except (OSError, ssl.SSLError) as err:
        parser.error(
            f"--tls_certfile {args.tls_certfile} / --tls_keyfile {args.tls_keyfile}: expected a PEM certificate "
            f"and its private key ({getattr(err, 'strerror', None) or err})"
        )


def _load_app(parser: argparse.ArgumentParser, args):
    """The application around a predictor loaded now (once per process)."""
    from eegfm.core.config import ConfigError
    from eegfm.inference.predictor import Predictor  # the model and training's loader: not for --help
    from eegfm.pipelines.privacy.deid import PseudonymKeyError, load_key
    from eegfm.serving.api.app import create_app
    from eegfm.serving.api.logged import install_upload_redaction
    from eegfm.serving.api.metrics import Metrics
    from eegfm.serving.api.service import PredictionService
    from eegfm.serving.predict import predict_config

    try:
        key = load_key(args.pseudonym_key_file) if args.pseudonym_key_file else None
        predictor = Predictor(args.model, predict_config(args, parser), name_key=key)
    except (ConfigError, FileNotFoundError, PseudonymKeyError) as err:
        parser.error(str(err))
    install_upload_redaction()
    metrics = Metrics()
    return create_app(PredictionService(predictor, args.limits, metrics), args.api_keys, metrics, args.marks_dir)


def worker_app():
    """The application of one worker of ``--workers`` > 1 (uvicorn's factory, in a new process)."""
    setup_logging("INFO")
    parser = build_parser()
    return _load_app(parser, _checked_args(parser, json.loads(os.environ[ARGV_ENV])))


def make_server(argv: list[str] | None = None):
    """The uvicorn server (``api.runner.GracefulServer``) and its bound socket; with one worker the
    model is loaded now, with more each worker loads it."""
    from eegfm.serving.api.runner import make_uvicorn_server
    from eegfm.serving.model_threads import threads_use

    parser = build_parser()
    args = _checked_args(parser, argv)
    if args.no_auth:
        log.warning("--no-auth: predictions are served to anyone who reaches %s:%d", args.host, args.port)
    log.info(cpu_use_line(Cpus.here().usable, [CpuUse(args.workers, "worker", "--workers N"), threads_use(args)]))
    if args.workers == 1:
        app = _load_app(parser, args)
    else:
        os.environ[ARGV_ENV] = json.dumps(sys.argv[1:] if argv is None else list(argv))
        app = "eegfm.serving.server:worker_app"
    return make_uvicorn_server(app, args)


def main(argv: list[str] | None = None) -> int:
    fair_threads()  # before any work: core/threads.py
    setup_logging("INFO")
    multiproc_dir = None
    args = build_parser().parse_args(argv)
    if args.workers > 1:  # each worker's metric samples, summed by /metrics: a private folder, removed after
        multiproc_dir = tempfile.mkdtemp(prefix="eegfm-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
    try:
        server, sock = make_server(argv)
        host, port = sock.getsockname()[:2]
        app = server.config.app
        what = f"{app.state.service.predictor.backend.name} model" if not isinstance(app, str) else "model"
        scheme = "https" if args.tls_certfile else "http"
        # the routes as the app holds them; the workers' apps (--workers > 1) live in other processes
        if isinstance(app, str):
            routes = "the routes of /openapi.json and /docs"
        else:
            from eegfm.serving.api.app import route_listing

            routes = route_listing(app)
        print(
            f"eegfm-serve: {what} on {scheme}://{host}:{port} with {args.workers} worker(s) ({routes}); "
            "Ctrl-C or SIGTERM stops",
            flush=True,
        )
        status = server.serve_socket(sock)
    finally:
        if multiproc_dir:
            shutil.rmtree(multiproc_dir, ignore_errors=True)
    log.info("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
