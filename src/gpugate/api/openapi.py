"""The OpenAPI document, generated from the same msgspec schemas the code uses."""

from __future__ import annotations

from typing import Any

import msgspec

from gpugate import __version__
from gpugate.api import schemas as api

_JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {_JSON: {"schema": _ref(name)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref("ErrorBody")}}}


_ERRORS = {
    "400": _error("bad request"),
    "403": _error("not the job's owner or an admin, or past a quota"),
    "404": _error("no such job"),
    "409": _error("not in this state"),
}


def _ok(name: str, status: str = "200") -> dict[str, Any]:
    return {
        status: {"description": "success", "content": {_JSON: {"schema": _ref(name)}}},
        **_ERRORS,
    }


_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}


def _job_op(summary: str, response: str, body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": [_JOB_ID], "responses": _ok(response)}
    if body:
        op["requestBody"] = _body(body)
    return op


def openapi_document() -> dict[str, Any]:
    types = [
        api.SubmitRequest,
        api.JobList,
        api.JobDetail,
        api.ActionResult,
        api.PriorityRequest,
        api.GpuList,
        api.Health,
        api.ErrorBody,
        api.SimLoadRequest,
        api.TokenResult,
        api.GpuHistory,
        api.JobUsageHistory,
        api.RevokeResult,
    ]
    _, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    p = api.API_PREFIX
    paths: dict[str, Any] = {
        f"{p}/health": {
            "get": {"summary": "daemon version and GPU backend", "responses": _ok("Health")}
        },
        f"{p}/jobs": {
            "get": {
                "summary": "active jobs and recently finished ones",
                "parameters": [
                    {"name": "recent", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {
                        "name": "queued",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0},
                        "description": "at most this many queued jobs, the next to start",
                    },
                    {"name": "state", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": _ok("JobList"),
            },
            "post": {
                "summary": "queue jobs (all or none)",
                "requestBody": _body("SubmitRequest"),
                "responses": _ok("JobList", "201"),
            },
        },
        p + "/jobs/{job_id}": {"get": _job_op("one job with its state history", "JobDetail")},
        p + "/jobs/{job_id}/cancel": {
            "post": _job_op("cancel (SIGTERM, grace, SIGKILL)", "ActionResult")
        },
        p + "/jobs/{job_id}/hold": {
            "post": _job_op("keep a queued job from starting", "ActionResult")
        },
        p + "/jobs/{job_id}/release": {"post": _job_op("queue a held job again", "ActionResult")},
        p + "/jobs/{job_id}/suspend": {
            "post": _job_op("SIGSTOP a running job (its GPU memory stays held)", "ActionResult")
        },
        p + "/jobs/{job_id}/resume": {"post": _job_op("SIGCONT a suspended job", "ActionResult")},
        p + "/jobs/{job_id}/checkpoint": {
            "post": _job_op(
                "ask a --preempt checkpoint job to save and exit 75 (requeued)", "ActionResult"
            )
        },
        p + "/jobs/{job_id}/priority": {
            "post": _job_op("change priority", "ActionResult", "PriorityRequest")
        },
        p + "/jobs/{job_id}/wait": {
            "get": _job_op("wait until the job ends (long poll)", "ActionResult")
        },
        p + "/jobs/{job_id}/logs": {
            "get": {
                "summary": "stdout or stderr from an offset; follow=1 streams until the job ends",
                "parameters": [
                    _JOB_ID,
                    {"name": "stream", "in": "query", "schema": {"enum": ["stdout", "stderr"]}},
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {
                    "200": {
                        "description": "log bytes",
                        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _ERRORS["400"],
                    "404": _ERRORS["404"],
                },
            }
        },
        p + "/jobs/{job_id}/usage": {
            "get": _job_op("the job's GPU use as sampled (its last hour)", "JobUsageHistory")
        },
        f"{p}/gpus": {"get": {"summary": "what the monitor sees", "responses": _ok("GpuList")}},
        f"{p}/gpus/history": {
            "get": {
                "summary": "each GPU's load over the last seconds (up to a day), for charts",
                "parameters": [
                    {
                        "name": "seconds",
                        "in": "query",
                        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                    }
                ],
                "responses": _ok("GpuHistory"),
            }
        },
        f"{p}/tokens": {
            "post": {
                "summary": "a new token for the API on TCP for the caller (Unix socket only)",
                "responses": _ok("TokenResult", "201"),
            }
        },
        f"{p}/tokens/revoke": {
            "post": {"summary": "revoke the caller's token", "responses": _ok("RevokeResult")}
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics: GPUs against their headroom, jobs, counters",
                "responses": {
                    "200": {
                        "description": "Prometheus text format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        f"{p}/sim/load": {
            "post": {
                "summary": "inject outside load on a simulated GPU",
                "requestBody": _body("SimLoadRequest"),
                "responses": _ok("GpuList"),
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "gpugate", "version": __version__},
        "paths": paths,
        "components": {"schemas": components},
    }
