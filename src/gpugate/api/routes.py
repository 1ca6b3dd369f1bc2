"""HTTP routes: thin. Decode and validate with the shared schemas, call the service, encode.

Every error is JSON ``{"error": "..."}`` with a 4xx status; nothing is changed by a
request that was refused.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gpugate import __version__
from gpugate.api import schemas as api
from gpugate.api.openapi import openapi_document
from gpugate.daemon import views
from gpugate.daemon.identity import PEER_KEY, TCP_KEY, Peer, user_name
from gpugate.daemon.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gpugate.daemon.metrics import render as render_metrics
from gpugate.daemon.service import Service, ServiceError
from gpugate.daemon.tokens import TcpGuard, TokenStore
from gpugate.runner.local import STDERR_FILE, STDOUT_FILE
from gpugate.states import JobState

LOG_CHUNK_BYTES = 64 * 1024
LOG_PAGE_BYTES = 8 * 1024 * 1024  # one answer's most; the client asks for the next page
MAX_ID = 2**63 - 1  # SQLite's largest integer: beyond it is not an id, not a crash
LOG_POLL_S = 0.2


class DaemonHandle(Protocol):
    """What routes need from the running daemon besides the service."""

    started_at: float

    async def wait_for_change(self, timeout_s: float) -> None: ...


def json_response(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status, media_type="application/json")


def error(message: str, status: int) -> Response:
    return json_response(api.ErrorBody(message), status)


Handler = Callable[[Request], Awaitable[Response]]


def guarded(handler: Handler) -> Handler:
    """Map the errors users cause to clear 4xx answers."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except msgspec.ValidationError as exc:
            return error(f"invalid request: {exc}", 400)
        except msgspec.DecodeError as exc:
            return error(f"malformed JSON: {exc}", 400)
        except ServiceError as exc:
            return error(str(exc), exc.status)

    return wrapped


def build_app(service: Service, daemon: DaemonHandle, tcp: str = "") -> Any:
    """The API; with ``tcp`` (the address it also listens on), behind the TCP guard."""
    engine = service.engine
    tokens = TokenStore(engine.paths.tokens)

    def peer(request: Request) -> Peer:
        """The kernel's word on who connected (SO_PEERCRED, see daemon.identity). Without
        a Unix socket (an in-process test client) the daemon's own user."""
        state = request.scope.get("state") or {}
        found = state.get(PEER_KEY)
        if isinstance(found, Peer):
            return found
        if state.get(TCP_KEY):  # a connection nobody vouched for, and no token checked
            raise ServiceError("who is asking is unknown on this connection", status=401)
        return Peer(os.getpid(), os.getuid(), os.getgid())

    def job_id(request: Request) -> int:
        value = int(request.path_params["job_id"])
        if not 1 <= value <= MAX_ID:
            raise ServiceError(f"no job with id {value}", status=404)
        return value

    async def health(request: Request) -> Response:
        snap = engine.snapshot
        return json_response(
            api.Health(
                __version__,
                snap.backend,
                snap.note,
                os.getpid(),
                daemon.started_at,
                engine.passes,
                engine.pass_seconds,
                len(engine.active),
            )
        )

    async def submit(request: Request) -> Response:
        body = msgspec.json.decode(await request.body(), type=api.SubmitRequest)
        jobs = service.submit(body.jobs, peer(request).uid, body.env)
        return json_response(api.JobList([views.job_view(engine, j) for j in jobs], {}), 201)

    async def list_jobs(request: Request) -> Response:
        limit = _int_param(request, "recent", engine.config.recent_limit)
        queued = _int_param(request, "queued", -1)
        states = {s for s in request.query_params.get("state", "").split(",") if s}
        if unknown := states - {state.value for state in JobState}:
            known = ", ".join(state.value for state in JobState)
            raise ServiceError(f"unknown state(s) {', '.join(sorted(unknown))} (known: {known})")
        listing = views.job_list(engine, limit, states or None, None if queued < 0 else queued)
        listing.jobs = [service.as_seen_by(peer(request), view) for view in listing.jobs]
        return json_response(listing)

    async def jobs_route(request: Request) -> Response:
        # one route for both methods, so a 405 there names both in its Allow header
        return await (submit(request) if request.method == "POST" else list_jobs(request))

    async def show(request: Request) -> Response:
        job = service.job(job_id(request))
        detail = views.job_detail(engine, job, engine.store.history(job.id))
        return json_response(service.detail_as_seen_by(peer(request), detail))

    def action(name: str) -> Handler:
        async def act(request: Request) -> Response:
            ident = job_id(request)
            caller = peer(request)
            service.authorize(caller, name, ident)
            if name == "resume":
                service.check_resume(caller, ident)
            job = getattr(service, name)(ident)
            return json_response(api.ActionResult(views.job_view(engine, job)))

        return act

    async def priority(request: Request) -> Response:
        body = msgspec.json.decode(await request.body(), type=api.PriorityRequest)
        ident = job_id(request)
        caller = peer(request)
        service.authorize(caller, "reprioritize", ident)
        service.check_priority(caller.uid, body.priority)
        job = service.set_priority(ident, body.priority)
        return json_response(api.ActionResult(views.job_view(engine, job)))

    async def wait(request: Request) -> Response:
        ident = job_id(request)
        timeout = _float_param(request, "timeout", 30.0)
        deadline = asyncio.get_running_loop().time() + min(max(timeout, 0.0), 300.0)
        while (job := service.job(ident)).is_active:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await daemon.wait_for_change(left)
        seen = service.as_seen_by(peer(request), views.job_view(engine, job))
        return json_response(api.ActionResult(seen))

    async def logs(request: Request) -> Response:
        ident = job_id(request)
        service.may_read_logs(peer(request), ident)
        stream = request.query_params.get("stream", "stdout")
        if stream not in ("stdout", "stderr"):
            raise ServiceError("stream must be stdout or stderr")
        path = engine.paths.job_dir(ident) / (STDOUT_FILE if stream == "stdout" else STDERR_FILE)
        offset = _int_param(request, "offset", 0)
        follow = request.query_params.get("follow", "0") in ("1", "true")
        body = (
            _follow_file(path, offset, lambda: service.job(ident).is_active, daemon)
            if follow
            else None
        )
        if body is not None:
            return StreamingResponse(body, media_type="application/octet-stream")
        chunk = _read_from(path, offset, LOG_PAGE_BYTES)  # a job can make its log huge
        return Response(chunk, media_type="application/octet-stream")

    async def gpus(request: Request) -> Response:
        return json_response(views.gpu_list(engine))

    async def job_usage(request: Request) -> Response:
        ident = job_id(request)
        service.may_read_logs(peer(request), ident)  # what it does is as private as its log
        points = list(engine.timeline.jobs.get(ident, ()))
        return json_response(api.JobUsageHistory(ident, api.UsageSeries(points)))

    async def gpu_history(request: Request) -> Response:
        seconds = _float_param(request, "seconds", 600.0)
        if not 0 < seconds <= 86400:
            raise ServiceError("seconds must be between 0 and 86400 (a day)")
        return json_response(views.gpu_history(engine, seconds))

    async def sim_load(request: Request) -> Response:
        service.require_admin(peer(request), "change simulated GPU load")
        service.sim_load(msgspec.json.decode(await request.body(), type=api.SimLoadRequest))
        return json_response(views.gpu_list(engine))

    async def new_token(request: Request) -> Response:
        caller = _over_unix(request, peer(request))
        return json_response(api.TokenResult(tokens.create(caller.uid), caller.uid), 201)

    async def revoke_token(request: Request) -> Response:
        caller = _over_unix(request, peer(request))
        return json_response(api.RevokeResult(tokens.revoke(caller.uid)))

    async def whoami(request: Request) -> Response:
        caller = peer(request)
        admin = service.authority.is_admin(caller.uid)
        return json_response(api.WhoAmI(caller.uid, user_name(caller.uid), admin))

    async def dashboard(request: Request) -> Response:
        return _static("index.html")

    async def static(request: Request) -> Response:
        return _static(request.path_params["name"])

    async def metrics(request: Request) -> Response:
        return Response(render_metrics(engine), media_type=METRICS_CONTENT_TYPE)

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document())

    p = api.API_PREFIX
    routes = [
        Route(f"{p}/health", guarded(health), methods=["GET"]),
        Route(f"{p}/jobs", guarded(jobs_route), methods=["GET", "POST"]),
        Route(p + "/jobs/{job_id:int}", guarded(show), methods=["GET"]),
        Route(p + "/jobs/{job_id:int}/cancel", guarded(action("cancel")), methods=["POST"]),
        Route(p + "/jobs/{job_id:int}/hold", guarded(action("hold")), methods=["POST"]),
        Route(p + "/jobs/{job_id:int}/release", guarded(action("release")), methods=["POST"]),
        Route(p + "/jobs/{job_id:int}/suspend", guarded(action("suspend")), methods=["POST"]),
        Route(p + "/jobs/{job_id:int}/resume", guarded(action("resume")), methods=["POST"]),
        Route(p + "/jobs/{job_id:int}/checkpoint", guarded(action("checkpoint")), methods=["POST"]),
        Route(p + "/jobs/{job_id:int}/priority", guarded(priority), methods=["POST"]),
        Route(p + "/jobs/{job_id:int}/wait", guarded(wait), methods=["GET"]),
        Route(p + "/jobs/{job_id:int}/logs", guarded(logs), methods=["GET"]),
        Route(p + "/jobs/{job_id:int}/usage", guarded(job_usage), methods=["GET"]),
        Route(f"{p}/gpus", guarded(gpus), methods=["GET"]),
        Route(f"{p}/gpus/history", guarded(gpu_history), methods=["GET"]),
        Route(f"{p}/sim/load", guarded(sim_load), methods=["POST"]),
        Route(f"{p}/tokens", guarded(new_token), methods=["POST"]),
        Route(f"{p}/tokens/revoke", guarded(revoke_token), methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route(f"{p}/whoami", guarded(whoami), methods=["GET"]),
        Route("/", dashboard, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/favicon.ico", lambda request: Response(status_code=204), methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    return TcpGuard(app, tokens, tcp) if tcp else app


WEB = Path(__file__).parent.parent / "web" / "static"
_WEB_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


def _static(name: str) -> Response:
    """The dashboard's own files (a fixed list: no path from the request reaches the
    file system). They hold no data, so TCP serves them without a token."""
    if name not in _WEB_TYPES:
        return error(f"no such file {name!r}", 404)
    # only our own files run in the page, and no other site may frame it
    headers = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"}
    return Response((WEB / name).read_bytes(), media_type=_WEB_TYPES[name], headers=headers)


def _over_unix(request: Request, caller: Peer) -> Peer:
    """Tokens are made and revoked only where the kernel names the caller."""
    if (request.scope.get("state") or {}).get(TCP_KEY):
        raise ServiceError("tokens are made over the Unix socket (`gpugate token`)", 403)
    return caller


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's own answers (no such path, a method the path does not take) in the
    API's error format, as the OpenAPI document promises."""
    assert isinstance(exc, HTTPException)
    response = error(exc.detail, exc.status_code)
    response.headers.update(exc.headers or {})
    return response


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ServiceError(f"query parameter {name} must be a whole number, not {raw!r}") from None
    if not 0 <= value <= MAX_ID:
        raise ServiceError(f"query parameter {name} must be between 0 and {MAX_ID}")
    return value


def _float_param(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ServiceError(f"query parameter {name} must be a number of seconds >= 0, not {raw!r}")
    return value


def _read_from(path: Path, offset: int, limit: int = -1) -> bytes:
    """Up to ``limit`` bytes (all if -1) of the file from ``offset``."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read(limit)
    except FileNotFoundError:
        return b""


async def _follow_file(
    path: Path, offset: int, running: Callable[[], bool], daemon: DaemonHandle
) -> AsyncIterator[bytes]:
    """Yield the log from ``offset`` as it grows, until the job ended and all is sent."""
    while True:
        alive = running()  # read before the file: data written before the end is not missed
        chunk = _read_from(path, offset, LOG_CHUNK_BYTES)
        if chunk:
            offset += len(chunk)
            yield chunk
            continue
        if not alive:
            return
        await daemon.wait_for_change(LOG_POLL_S)
