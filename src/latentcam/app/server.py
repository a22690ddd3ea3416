"""The HTTP layer of ``latentcam app``: a FastAPI service over one :class:`ExplorerSession`.

Why FastAPI and a static page (not Gradio): it works fully offline (no asset, font or
script from a CDN, no telemetry), it is a thin layer over latentcam's public Python API,
the JSON API is visible and scriptable, and it is testable with FastAPI's TestClient.

Endpoints (JSON unless said; pictures are PNG data URLs; every error is
``{"error": message}`` with a 4xx status: 400 for a bad value or a body of the wrong shape
(a JSON ``true`` is not a unit index, nor ``"2"``), 403 for a path outside ``--runs``, a
missing token or a request from another site, 413 for a body over its route's cap, 415 for
an upload that is not ``application/octet-stream`` or ``image/*``):

=========================  ================================================================
``GET /``                  the page (``static/index.html``); ``/static/*`` its JS and CSS
``GET /api/state``         model facts, state, image view and live view
``POST /api/image``        ``{"index": i}`` or ``{"random": true}``: a dataset image
``POST /api/upload``       the raw bytes of an image file (``?name=face.jpg``), sent as
                           ``application/octet-stream`` (or ``image/*``)
``POST /api/offset``       ``{"unit": k, "value": v}``: set one slider -> live view
``POST /api/unit``         ``{"unit": k}``: choose (and add) a unit -> live view
``POST /api/direction``    ``{"name": "Smiling", "value": t}``: move along a direction by t
                           data standard deviations (``value`` left out: only choose it)
                           -> live view
``POST /api/attribute``    ``{"name": "Smiling", "value": 1}`` (CVAE) -> live view
``POST /api/seg_class``    ``{"cls": c}`` (SegVAE) -> image view
``POST /api/reset``        offsets to zero, the image's own attributes -> state
``GET /api/runs``          what ``POST /api/checkpoint`` can load: the runs folder and the
                           runs, adapted models and ``.ckpt`` files under it
``POST /api/checkpoint``   ``{"path": ...}``: load another run from under the runs folder
                           (relative to it, or absolute); it replaces the current one only
                           once its whole state is computed, else the current stays
``GET /api/z``             the latent vector as a JSON file (read back by ``--z``)
``POST /api/z``            a saved latent vector (JSON body) -> state
``GET /api/view.png``      the current view as one labelled PNG figure
=========================  ================================================================

Model work runs under one lock (uvicorn runs sync endpoints in a thread pool). A request
that changes the state is applied to a copy of the session
(:meth:`ExplorerSession.copy`), which replaces the session only once the new view is
computed: a request that fails (a bad value, an error half-way through the computation)
leaves the session answering exactly as before.

Before a route runs (:mod:`latentcam.app.guard`, outermost first):

- requests whose ``Host`` header is not a loopback name (``127.0.0.1``, ``localhost``,
  ``[::1]``) or the address it listens on are refused with 400 (Starlette's
  ``TrustedHostMiddleware``), so that a web page elsewhere cannot reach it through DNS
  rebinding;
- with a token (required for a non-loopback ``host``), a request without it is refused
  with 403;
- a state-changing request from another site's page is refused with 403;
- every body is capped while it streams: :data:`MAX_BODY_BYTES` for the JSON routes,
  ``max_upload_bytes`` for ``/api/upload`` (413, nothing over the cap is read).

Checkpoints load only from under the runs folder (:class:`latentcam.app.runs.RunsFolder`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentcam.app.guard import BodyLimit, SameOrigin, Scope, TokenGate, query_value
from latentcam.app.runs import OutsideRuns, RunsFolder
from latentcam.app.session import (
    MAX_UPLOAD_BYTES,
    ExplorerSession,
    ImageView,
    LiveView,
    UploadTooLarge,
)
from latentcam.errors import InputError, LatentcamError
from latentcam.report.html import data_uri

log = logging.getLogger(__name__)

T = TypeVar("T")


#: Host names a local server always answers to.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Content types accepted by ``POST /api/upload`` (besides any ``image/*``).
UPLOAD_TYPES = ("application/octet-stream",)
#: Largest body of the JSON routes, in bytes: a saved latent vector of K = 512 units is
#: about 25 kB.
MAX_BODY_BYTES = 1024 * 1024
#: A token given with ``--token``: URL- and cookie-safe characters, long enough to guess
#: no sooner than :func:`new_token`'s (which has 43).
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,}")


class UnsupportedUpload(InputError):
    """An upload sent with another content type (the server answers 415)."""


def new_token() -> str:
    """A random token for a non-loopback server (256 bits, URL-safe; as Jupyter's)."""
    return secrets.token_urlsafe(32)


def check_token(token: str) -> str:
    """``token`` when it is at least 16 URL-safe characters (letters, digits, ``._~-``).

    Raises:
        InputError: another token.
    """
    if not TOKEN_PATTERN.fullmatch(token):
        raise InputError(
            "--token must be at least 16 characters, each a letter, a digit or one of . _ ~ -; "
            "leave it out to get a random one"
        )
    return token


def upload_too_large(name: str, limit: int) -> str:
    """The message of an upload over ``limit`` bytes."""
    return (
        f"the upload '{name}' is larger than the limit of {limit / 2**20:g} MB; upload a "
        "smaller image"
    )


def _uri(png: bytes | None) -> str | None:
    """PNG bytes as a data URI (:func:`latentcam.report.html.data_uri`); None stays None."""
    return None if png is None else data_uri(png)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine only."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str]:
    """The ``Host`` header names the server answers to when it listens on ``host``: the
    loopback names and ``host`` itself; for a wildcard address (``0.0.0.0``, ``::``) also
    this machine's name (:func:`socket.gethostname`)."""
    names = [*LOOPBACK_HOSTS, host.strip("[]")]
    if host.strip("[]") in ("0.0.0.0", "::", ""):
        names.append(socket.gethostname())
    # Starlette compares the parsed host, which keeps an IPv6 address in brackets
    bracketed = [f"[{n}]" for n in names if ":" in n]
    return list(dict.fromkeys(n.lower() for n in [*names, *bracketed] if n))


def live_json(view: LiveView, seconds: float) -> dict[str, Any]:
    return {
        "unit": view.unit,
        "offset": view.offset,
        "decoded": _uri(view.decoded),
        "unit_cam": _uri(view.unit_cam),
        "effect": _uri(view.effect),
        "effect_max": view.effect_max,
        "seg_overlay": _uri(view.seg_overlay),
        "direction": view.direction,
        "step": view.step,
        "target": view.target,
        "server_ms": round(seconds * 1000.0, 2),
    }


def image_json(view: ImageView) -> dict[str, Any]:
    return {
        "source": view.source,
        "input": _uri(view.input),
        "recon": _uri(view.recon),
        "mean_cam": _uri(view.mean_cam),
        "gallery": [{"unit": unit, "png": _uri(png)} for unit, png in view.gallery],
        "seg_cam": _uri(view.seg_cam),
    }


class Body(BaseModel):
    """A JSON body taken as it is: no JSON ``true`` for an integer (Python's bool is an
    int), no ``"2"`` for a number, no key the route does not know. The values' ranges are
    checked by the session."""

    model_config = ConfigDict(strict=True, extra="forbid")


#: A name sent by the page (a direction or attribute name).
Name = Annotated[str, Field(max_length=200)]


class ImageChoice(Body):
    index: int | None = None
    random: bool = False


class OffsetMove(Body):
    unit: int
    value: float


class UnitChoice(Body):
    unit: int


class DirectionMove(Body):
    name: Name
    value: float | None = None


class AttributeToggle(Body):
    name: Name
    value: float


class SegClassChoice(Body):
    cls: int


class CheckpointChoice(Body):
    path: Annotated[str, Field(max_length=4096)]


def static_dir() -> Path:
    """The folder of the page's files (package data)."""
    return Path(str(resources.files("latentcam.app") / "static"))


def create_app(
    session: ExplorerSession,
    data: str | Path | None = None,
    open_options: dict[str, Any] | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    host: str = "127.0.0.1",
    runs: RunsFolder | None = None,
    token: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI app serving the page and the JSON API over ``session``.

    Args:
        session: the exploration state (replaced when the page loads another checkpoint).
        data: the dataset a newly loaded checkpoint is opened with (None: its own).
        open_options: keyword arguments of :meth:`ExplorerSession.open` for a new checkpoint.
        max_upload_bytes: uploads above this many bytes are refused with 413.
        host: the address the server listens on: requests are answered only for the
            ``Host`` names of :func:`allowed_hosts`; a warning is logged when it is not a
            loopback address (the page then answers other machines).
        runs: the folder checkpoints load from (default: the session's own run,
            :meth:`RunsFolder.around`).
        token: when given, every request must carry it (:class:`latentcam.app.guard.
            TokenGate`); required when ``host`` is not a loopback address.
        max_body_bytes: the bodies of the JSON routes above this many bytes are refused
            with 413.

    Raises:
        InputError: a non-loopback ``host`` without a token, or a malformed token.
    """
    if token is not None:
        check_token(token)
    if not is_loopback(host):
        if token is None:
            raise InputError(
                f"latentcam app on {host}, which is not a loopback address, needs a token: "
                "give one (--token), or let latentcam app make one"
            )
        log.warning(
            "latentcam app listens on %s, which is not a loopback address: other machines on "
            "the network can reach the page; it answers only requests that carry its token",
            host,
        )
    folder = runs if runs is not None else RunsFolder.around(session.run.run_dir or session.source)
    app = FastAPI(title="latentcam app", docs_url=None, redoc_url=None, openapi_url=None)

    def limit_for(scope: Scope) -> tuple[int, str]:
        if scope["path"] == "/api/upload":
            name = query_value(scope, "name") or "upload"
            return max_upload_bytes, upload_too_large(name, max_upload_bytes)
        return max_body_bytes, (
            f"the body of {scope['method']} {scope['path']} is larger than the limit of "
            f"{max_body_bytes / 1024:g} kB; send less"
        )

    # the last added runs first: host check, token, origin, then the body cap
    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.add_middleware(SameOrigin)
    if token is not None:
        app.add_middleware(TokenGate, token=token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))
    lock = threading.Lock()
    state: dict[str, ExplorerSession] = {"session": session}
    options = dict(open_options or {})

    def locked(fn: Callable[[ExplorerSession], T]) -> T:
        """``fn`` of the session, which it must not change (a view, a download)."""
        with lock:
            return fn(state["session"])

    def change(fn: Callable[[ExplorerSession], T]) -> T:
        """``fn`` (which changes the session and computes the view to answer) run on a
        copy; the copy becomes the session only when all of it worked."""
        with lock:
            trial = state["session"].copy()
            shown = fn(trial)
            state["session"] = trial
            return shown

    def info(s: ExplorerSession) -> dict[str, Any]:
        return {**s.info(), "max_upload_bytes": max_upload_bytes}

    def full_state(s: ExplorerSession) -> dict[str, Any]:
        start = time.perf_counter()
        image = image_json(s.image_view())
        live = s.live_view()
        return {
            "info": info(s),
            "image": image,
            "live": live_json(live, time.perf_counter() - start),
        }

    def live(s: ExplorerSession) -> dict[str, Any]:
        start = time.perf_counter()
        view = s.live_view()
        return {"live": live_json(view, time.perf_counter() - start), "info": info(s)}

    @app.exception_handler(LatentcamError)
    async def _latentcam_error(request: Request, err: LatentcamError) -> JSONResponse:
        status = 400
        if isinstance(err, UploadTooLarge):
            status = 413
        elif isinstance(err, UnsupportedUpload):
            status = 415
        elif isinstance(err, OutsideRuns):
            status = 403
        return JSONResponse({"error": str(err)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = []
        for e in err.errors():
            where = ".".join(str(p) for p in e.get("loc", ()))
            got = e.get("input")
            shown = "" if e.get("type") == "missing" else f", got {_shown(got)}"
            problems.append(f"{where}: {e.get('msg', '')}{shown}")
        return JSONResponse({"error": f"bad request: {'; '.join(problems)}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": f"{request.url.path}: {err.detail}"}, status_code=err.status_code
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error in %s", request.url.path)
        return JSONResponse(
            {"error": f"internal error ({type(err).__name__}); see the server log"},
            status_code=500,
        )

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse((static_dir() / "index.html").read_text())

    @app.get("/api/state")
    def get_state() -> dict[str, Any]:
        return locked(full_state)

    @app.post("/api/image")
    def post_image(choice: ImageChoice) -> dict[str, Any]:
        def run(s: ExplorerSession) -> dict[str, Any]:
            if choice.random:
                s.select_random()
            elif choice.index is not None:
                s.select_image(choice.index)
            else:
                raise InputError("give an image index or random: true")
            return full_state(s)

        return change(run)

    @app.post("/api/upload")
    async def post_upload(request: Request, name: str = "upload") -> Any:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in UPLOAD_TYPES and not kind.startswith("image/"):
            raise UnsupportedUpload(
                f"the upload '{name}' was sent as {kind or 'no content type'!r}; send the "
                "file's bytes as application/octet-stream (or image/*)"
            )
        body = await request.body()  # at most max_upload_bytes: BodyLimit capped it

        def run(s: ExplorerSession) -> dict[str, Any]:
            s.upload(body, name)
            return full_state(s)

        return await run_in_threadpool(change, run)

    @app.post("/api/offset")
    def post_offset(move: OffsetMove) -> dict[str, Any]:
        def run(s: ExplorerSession) -> dict[str, Any]:
            s.set_offset(move.unit, move.value)
            return live(s)

        return change(run)

    @app.post("/api/unit")
    def post_unit(choice: UnitChoice) -> dict[str, Any]:
        def run(s: ExplorerSession) -> dict[str, Any]:
            s.select_unit(choice.unit)
            return live(s)

        return change(run)

    @app.post("/api/direction")
    def post_direction(move: DirectionMove) -> dict[str, Any]:
        def run(s: ExplorerSession) -> dict[str, Any]:
            if move.value is None:
                s.select_direction(move.name)
            else:
                s.set_direction(move.name, move.value)
            return live(s)

        return change(run)

    @app.post("/api/attribute")
    def post_attribute(toggle: AttributeToggle) -> dict[str, Any]:
        def run(s: ExplorerSession) -> dict[str, Any]:
            s.set_attribute(toggle.name, toggle.value)
            return live(s)

        return change(run)

    @app.post("/api/seg_class")
    def post_seg_class(choice: SegClassChoice) -> dict[str, Any]:
        def run(s: ExplorerSession) -> dict[str, Any]:
            s.set_seg_class(choice.cls)
            return {"image": image_json(s.image_view()), "info": info(s)}

        return change(run)

    @app.post("/api/reset")
    def post_reset() -> dict[str, Any]:
        def run(s: ExplorerSession) -> dict[str, Any]:
            s.reset()
            return full_state(s)

        return change(run)

    @app.get("/api/runs")
    def get_runs() -> dict[str, Any]:
        listing = folder.list()
        return {
            "root": str(folder.root),
            "runs": [entry._asdict() for entry in listing.entries],
            "truncated": listing.truncated,
        }

    @app.post("/api/checkpoint")
    def post_checkpoint(choice: CheckpointChoice) -> dict[str, Any]:
        path = folder.resolve(choice.path)  # OutsideRuns: 403
        # load and compute the whole state of the new session outside the lock (the current
        # one keeps serving meanwhile); swap only when all of it worked
        new = ExplorerSession.open(path, data=data, **options)
        shown = full_state(new)
        with lock:
            state["session"] = new
        return shown

    @app.get("/api/z")
    def get_z() -> JSONResponse:
        record = locked(lambda s: s.z_record())
        return JSONResponse(
            record, headers={"Content-Disposition": 'attachment; filename="latent.json"'}
        )

    @app.post("/api/z")
    def post_z(record: dict[str, Any]) -> dict[str, Any]:
        def run(s: ExplorerSession) -> dict[str, Any]:
            s.apply_z(record, "the uploaded vector")
            return full_state(s)

        return change(run)

    @app.get("/api/view.png")
    def get_view_png() -> Response:
        png = locked(lambda s: s.figure_png())
        return Response(
            png,
            media_type="image/png",
            headers={"Content-Disposition": 'attachment; filename="latentcam_view.png"'},
        )

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    return app


def _shown(value: Any) -> str:
    """A request value as JSON (``true``, ``"2"``), cut to 60 characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port`` (port 0: a free port).

    Raises:
        InputError: the port is taken or the host cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it every
    # response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port} ({err.strerror}); choose another --port "
            "(--port 0 picks a free one)"
        ) from None
    return sock


def server_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def make_server(app: FastAPI) -> Any:
    """A quiet uvicorn server for ``app`` (sockets are given to ``run``)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config)


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` in a background thread while the block runs; yields its URL.

    Used by the browser test and the latency benchmark (port 0: a free port).
    """
    sock = bind_socket(host, port)
    url = server_url(sock)
    server = make_server(app)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the app server at {url} did not start")
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()
