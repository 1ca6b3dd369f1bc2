"""The Python client: the only way the CLI (and scripts) talk to the daemon.

A minimal HTTP exchange over the Unix socket plus msgspec, so ``import gpugate.client`` stays
cheap for a CLI that must start in well under 150 ms.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

import msgspec

from gpugate.api import schemas as api
from gpugate.client import http
from gpugate.client.http import DaemonNotRunning

T = TypeVar("T")
_P = api.API_PREFIX


class ApiError(RuntimeError):
    """The daemon refused a request; ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def default_socket() -> str:
    """$GPUGATE_SOCKET; else the user's own daemon; else a system daemon's, if one runs."""
    from gpugate.daemon.paths import SOCKET_ENV, SYSTEM_SOCKET, StatePaths  # light

    own = StatePaths.default().socket
    if os.environ.get(SOCKET_ENV) or own.exists() or not SYSTEM_SOCKET.exists():
        return str(own)
    return str(SYSTEM_SOCKET)


class Client:
    def __init__(
        self, socket_path: str | os.PathLike[str] | None = None, timeout_s: float = 60.0
    ) -> None:
        self.socket_path = str(socket_path or default_socket())
        self.timeout_s = timeout_s

    # ------------------------------------------------------------------ plumbing
    def _call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> bytes:
        url = path + (f"?{urlencode(query)}" if query else "")
        payload = msgspec.json.encode(body) if body is not None else None
        with http.connect(self.socket_path, self.timeout_s) as sock:
            response = http.send(sock, method, url, payload)
            data = response.read()
        if response.status >= 400:
            raise ApiError(response.status, _error_text(data, response.status))
        return data

    def _get(self, path: str, type_: type[T], query: dict[str, Any] | None = None) -> T:
        return msgspec.json.decode(self._call("GET", path, query=query), type=type_)

    def _post(self, path: str, type_: type[T], body: Any = None) -> T:
        return msgspec.json.decode(
            self._call("POST", path, body=body if body is not None else {}), type=type_
        )

    # ---------------------------------------------------------------------- jobs
    def submit(
        self, jobs: Sequence[api.JobSubmission], env: dict[str, str] | None = None
    ) -> list[api.JobView]:
        """Queue jobs all together or none; returns them with their ids.

        ``env``: the environment of every job whose own ``env`` is None (sent once).
        """
        request = api.SubmitRequest(list(jobs), env or {})
        return self._post(f"{_P}/jobs", api.JobList, request).jobs

    def submit_command(self, command: str, **fields: Any) -> api.JobView:
        """Queue one shell command; ``fields`` are JobSubmission's. Like the CLI, the job
        runs in this process's working directory and environment unless told otherwise."""
        fields.setdefault("cwd", os.getcwd())
        env = fields.pop("env", None)
        job = api.JobSubmission(command=command, **fields)
        return self.submit([job], dict(os.environ) if env is None else env)[0]

    def jobs(
        self, recent: int | None = None, states: Sequence[str] = (), queued: int | None = None
    ) -> api.JobList:
        """Active jobs (at most ``queued`` queued ones: the next to start) and the ``recent``
        most recently ended (the daemon's default: 50)."""
        query: dict[str, Any] = {}
        if recent is not None:
            query["recent"] = recent
        if queued is not None:
            query["queued"] = queued
        if states:
            query["state"] = ",".join(states)
        return self._get(f"{_P}/jobs", api.JobList, query)

    def show(self, job_id: int) -> api.JobDetail:
        return self._get(f"{_P}/jobs/{job_id}", api.JobDetail)

    def cancel(self, job_id: int) -> api.JobView:
        return self._post(f"{_P}/jobs/{job_id}/cancel", api.ActionResult).job

    def hold(self, job_id: int) -> api.JobView:
        return self._post(f"{_P}/jobs/{job_id}/hold", api.ActionResult).job

    def release(self, job_id: int) -> api.JobView:
        return self._post(f"{_P}/jobs/{job_id}/release", api.ActionResult).job

    def suspend(self, job_id: int) -> api.JobView:
        return self._post(f"{_P}/jobs/{job_id}/suspend", api.ActionResult).job

    def resume(self, job_id: int) -> api.JobView:
        return self._post(f"{_P}/jobs/{job_id}/resume", api.ActionResult).job

    def checkpoint(self, job_id: int) -> api.JobView:
        return self._post(f"{_P}/jobs/{job_id}/checkpoint", api.ActionResult).job

    def set_priority(self, job_id: int, priority: int) -> api.JobView:
        return self._post(
            f"{_P}/jobs/{job_id}/priority", api.ActionResult, api.PriorityRequest(priority)
        ).job

    def wait(
        self, job_id: int, timeout_s: float | None = None, poll_s: float = 30.0
    ) -> api.JobView:
        """Block until the job ends (or the timeout passes); returns its last view."""
        import time

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = (
                poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic()))
            )
            job = self._get(f"{_P}/jobs/{job_id}/wait", api.ActionResult, {"timeout": left}).job
            if job.ended_at is not None or (deadline is not None and time.monotonic() >= deadline):
                return job

    def logs(self, job_id: int, stream: str = "stdout", offset: int = 0) -> bytes:
        """The log from ``offset`` to its end, page by page (the daemon caps an answer)."""
        pages: list[bytes] = []
        while True:
            page = self._call(
                "GET", f"{_P}/jobs/{job_id}/logs", query={"stream": stream, "offset": offset}
            )
            if not page:
                return b"".join(pages)
            pages.append(page)
            offset += len(page)

    def follow_logs(self, job_id: int, stream: str = "stdout", offset: int = 0) -> Iterator[bytes]:
        """Yield the log as it is written, until the job has ended and all is read."""
        query = urlencode({"stream": stream, "offset": offset, "follow": 1})
        with http.connect(self.socket_path, None) as sock:
            response = http.send(sock, "GET", f"{_P}/jobs/{job_id}/logs?{query}", None)
            if response.status >= 400:
                raise ApiError(response.status, _error_text(response.read(), response.status))
            yield from response.chunks()

    # ---------------------------------------------------------------------- rest
    def gpus(self) -> api.GpuList:
        return self._get(f"{_P}/gpus", api.GpuList)

    def health(self) -> api.Health:
        return self._get(f"{_P}/health", api.Health)

    def job_usage(self, job_id: int) -> api.JobUsageHistory:
        return self._get(f"{_P}/jobs/{job_id}/usage", api.JobUsageHistory)

    def gpu_history(self, seconds: float = 600.0) -> api.GpuHistory:
        return self._get(f"{_P}/gpus/history", api.GpuHistory, {"seconds": seconds})

    def create_token(self) -> api.TokenResult:
        """A new token for the HTTP API on TCP, replacing this user's old one."""
        return self._post(f"{_P}/tokens", api.TokenResult, None)

    def revoke_token(self) -> bool:
        return self._post(f"{_P}/tokens/revoke", api.RevokeResult, None).revoked

    def sim_load(self, request: api.SimLoadRequest) -> api.GpuList:
        return self._post(f"{_P}/sim/load", api.GpuList, request)


def _error_text(data: bytes, status: int) -> str:
    try:
        return str(msgspec.json.decode(data, type=api.ErrorBody).error)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return f"HTTP {status}: {data[:200].decode(errors='replace')}"


__all__ = ["ApiError", "Client", "DaemonNotRunning"]
