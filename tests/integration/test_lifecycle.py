"""The daemon as a user meets it: the CLI, bad input, crashes and restarts."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gpugate.units import GiB
from tests.integration.conftest import BIN, RunningDaemon, wait_for

pytestmark = pytest.mark.integration


def test_daemon_killed_mid_run_loses_no_job_and_no_exit_code(daemon: RunningDaemon) -> None:
    gate = daemon.home / "gate"
    ends_while_down = daemon.submit("sleep 0.5; exit 3", gpus=0)
    runs_across = daemon.submit(f"while [ ! -e {gate} ]; do sleep 0.05; done; exit 4", gpus=0)
    queued = daemon.submit("echo later", gpus=0, hold=True)
    daemon.wait_state(ends_while_down, "running")
    daemon.wait_state(runs_across, "running")
    daemon.stop(signal.SIGKILL)
    exit_file = daemon.home / "jobs" / str(ends_while_down) / "exit"
    wait_for(lambda: exit_file.read_text().strip(), what="the status in the exit file")
    daemon.start()
    done = daemon.wait_state(ends_while_down, "failed")
    assert (done.exit_code, done.reason) == (3, "exited 3")
    assert daemon.state(runs_across) == "running"  # re-adopted, not restarted
    gate.touch()
    assert daemon.wait_state(runs_across, "failed").exit_code == 4
    assert daemon.state(queued) == "held"
    history = [t.to_state for t in daemon.client.show(runs_across).history]
    assert history == ["queued", "starting", "running", "failed"]


def test_a_job_whose_process_vanished_while_the_daemon_was_down_is_lost(
    daemon: RunningDaemon,
) -> None:
    job = daemon.submit("sleep 300", gpus=0)
    running = daemon.wait_state(job, "running")
    daemon.stop(signal.SIGKILL)
    import os

    os.killpg(running.pid, signal.SIGKILL)  # shim and job die together: no exit file
    daemon.start()
    lost = daemon.wait_state(job, "lost")
    assert "without leaving an exit code" in lost.reason


def test_no_daemon_says_how_to_start_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "gpugate"), "ls"],
        capture_output=True,
        text=True,
        env={"GPUGATE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "no gpugate daemon is running" in result.stderr and "gpugate serve" in result.stderr


def test_bad_input_gets_clear_errors_and_changes_nothing(daemon: RunningDaemon) -> None:
    kept = daemon.submit("echo kept", gpus=0)
    daemon.wait_state(kept, "succeeded")
    before = daemon.client.jobs().jobs

    unknown = daemon.cli("show", "999")
    assert unknown.returncode == 1 and "no job with id 999" in unknown.stderr
    bad_size = daemon.cli("submit", "--mem", "10XB", "--", "true")
    assert bad_size.returncode == 2 and "unknown size unit 'XB'" in bad_size.stderr
    empty = daemon.cli("submit")
    assert empty.returncode == 2 and "no command given" in empty.stderr
    blank = daemon.cli("submit", "--", "   ")
    assert blank.returncode == 1 and "empty command" in blank.stderr
    too_big = daemon.cli("submit", "--mem", "30GiB", "--", "true")
    assert too_big.returncode == 1 and "can never start" in too_big.stderr
    assert "largest allows 21.6 GiB (90% of 24.0 GiB)" in too_big.stderr
    too_many = daemon.cli("submit", "--gpus", "3", "--", "true")
    assert too_many.returncode == 1 and "asks for 3 GPUs; this machine has 1" in too_many.stderr
    no_dep = daemon.cli("submit", "--after", "4242", "--", "true")
    assert no_dep.returncode == 1 and "unknown job(s): 4242" in no_dep.stderr
    bad_id = daemon.cli("cancel", "abc")
    assert bad_id.returncode == 2 and "not a job id" in bad_id.stderr
    finished = daemon.cli("cancel", str(kept))
    assert finished.returncode == 1 and "already ended (succeeded)" in finished.stderr

    assert _raw_post(daemon, "/v1/jobs", b"{not json")[0] == 400
    status, body = _raw_post(daemon, "/v1/jobs", json.dumps({"jobs": [{"command": "x"}]}).encode())
    assert status == 400 and "cwd" in body["error"]
    status, body = _raw_post(
        daemon,
        "/v1/jobs",
        json.dumps({"jobs": [{"command": "x", "cwd": "/", "gpus": -1}]}).encode(),
    )
    assert status == 400 and "gpus" in body["error"]
    status, body = _raw_post(
        daemon,
        "/v1/jobs",
        json.dumps(
            {"jobs": [{"command": "echo ok", "cwd": "/", "gpus": 0}, {"command": "", "cwd": "/"}]}
        ).encode(),
    )
    assert status == 400  # a bad job refuses its whole batch
    assert daemon.client.jobs().jobs == before


def test_a_working_directory_gone_by_launch_time_fails_the_job_with_the_reason(
    daemon: RunningDaemon, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    job = daemon.submit("true", gpus=0, cwd=str(workdir), hold=True)
    workdir.rmdir()
    daemon.client.release(job)
    failed = daemon.wait_state(job, "failed")
    assert failed.reason == f"could not start: working directory {workdir} does not exist"
    # a directory that is already missing at submit is refused there, with nothing stored
    bad = _raw_post(
        daemon,
        "/v1/jobs",
        json.dumps({"jobs": [{"command": "true", "cwd": str(workdir)}]}).encode(),
    )
    assert bad[0] == 400 and "does not exist" in bad[1]["error"]


def _raw_post(daemon: RunningDaemon, path: str, body: bytes) -> tuple[int, dict]:  # type: ignore[type-arg]
    conn = http.client.HTTPConnection("localhost")
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(str(daemon.home / "gpugate.sock"))
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    return response.status, data


def test_submit_file_ls_wait_and_logs_through_the_cli(
    daemon: RunningDaemon, tmp_path: Path
) -> None:
    jobs_file = tmp_path / "jobs.txt"
    jobs_file.write_text("# a sweep\necho lr=1\n\necho lr=2\nexit 5\n")
    out = daemon.cli("submit", "--gpus", "0", "--file", str(jobs_file), check=True).stdout
    assert out.strip() == "submitted 3 jobs: 1-3"
    assert daemon.cli("wait", "1", "2").returncode == 0
    assert daemon.cli("wait", "3").returncode == 5
    assert daemon.cli("logs", "2", check=True).stdout == "lr=2\n"
    listing = json.loads(daemon.cli("ls", "--json", check=True).stdout)
    assert sorted((j["id"], j["state"], j["exit_code"]) for j in listing["jobs"])[::-1] == [
        (3, "failed", 5),
        (2, "succeeded", 0),
        (1, "succeeded", 0),
    ]
    text = daemon.cli("ls", check=True).stdout
    assert "ID" in text.splitlines()[0] and "exited 5" in text
    shown = json.loads(daemon.cli("show", "3", "--json", check=True).stdout)
    assert [t["to_state"] for t in shown["history"]] == ["queued", "starting", "running", "failed"]


def test_logs_follow_streams_until_the_job_ends(daemon: RunningDaemon) -> None:
    gate = daemon.home / "gate"
    job = daemon.submit(
        f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second >&2", gpus=0
    )
    follower = subprocess.Popen(
        [str(BIN / "gpugate"), "logs", "-f", str(job)],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert follower.stdout is not None
    assert follower.stdout.readline() == b"first\n"  # arrives while the job still runs
    assert follower.poll() is None
    gate.touch()
    _out, err = follower.communicate(timeout=20)
    assert follower.returncode == 0 and err == b"second\n"


def test_gpus_shows_processes_ours_or_not(make_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = make_daemon("sim:2x16GiB")
    daemon.cli("sim", "load", "--gpu", "1", "--mem", "3GiB", "--name", "other-user", check=True)
    gate = daemon.home / "gate"
    job = daemon.submit(
        f"gpugate sim use --mem 2GiB && while [ ! -e {gate} ]; do sleep 0.05; done",
        mem_bytes=2 * GiB,
    )
    daemon.wait_state(job, "starting", "running")
    wait_for(lambda: any(p.job_id == job for g in daemon.client.gpus().gpus for p in g.processes))
    text = daemon.cli("gpus", check=True).stdout
    assert "backend: sim" in text and f"job {job}" in text and "not gpugate" in text
    gate.touch()


def test_serve_refuses_a_second_daemon_on_the_same_socket(daemon: RunningDaemon) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "gpugate.cli.main", "serve", "--gpus", "sim:1x1GiB"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1 and "already running" in second.stderr
    assert daemon.client.health().backend == "sim"
    assert daemon.proc is not None
    assert (daemon.home / "gpugate.pid").read_text().strip() == str(daemon.proc.pid)


def test_a_cancel_interrupted_by_a_daemon_crash_still_ends_in_sigkill(
    daemon: RunningDaemon,
) -> None:
    job = daemon.submit("trap '' TERM; echo ready; while true; do sleep 0.1; done", gpus=0)
    wait_for(lambda: daemon.client.logs(job) == b"ready\n")
    daemon.client.cancel(job)
    daemon.stop(signal.SIGKILL)  # before the grace period (2 s) ends
    daemon.start()
    done = daemon.wait_state(job, "cancelled", timeout_s=20)
    assert done.reason.startswith("cancelled by user")


def test_a_malformed_simulated_usage_file_does_not_stop_the_daemon(daemon: RunningDaemon) -> None:
    (daemon.home / "sim" / "proc-bad.json").write_text('{"pid": "abc", "gpus": 3}')
    (daemon.home / "sim" / "proc-worse.json").write_text("not json at all")
    job = daemon.submit("gpugate sim use --mem 1GiB", mem_bytes=1 * GiB)
    daemon.wait_state(job, "succeeded")
    assert daemon.client.health().backend == "sim"


def test_malformed_queries_get_4xx_never_500(daemon: RunningDaemon) -> None:
    for path in (
        "/v1/jobs/99999999999999999999999",
        "/v1/jobs/1/wait?timeout=abc",
        "/v1/jobs/1/wait?timeout=nan",
        "/v1/jobs/1/logs?offset=99999999999999999999999",
        "/v1/jobs?state=bogus",
        "/v1/jobs?recent=-3",
    ):
        status, body = _raw_get(daemon, path)
        assert 400 <= status < 500, (path, status, body)
        assert body["error"]
    status, body = _raw_post(
        daemon, "/v1/sim/load", json.dumps({"gpu": "7", "mem_bytes": 1}).encode()
    )
    assert status == 400 and "no simulated GPU '7'" in body["error"]


def _raw_get(daemon: RunningDaemon, path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    conn = http.client.HTTPConnection("localhost")
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(str(daemon.home / "gpugate.sock"))
    conn.request("GET", path)
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    return response.status, data


def test_following_the_logs_of_an_unknown_job_is_a_clear_error(daemon: RunningDaemon) -> None:
    result = daemon.cli("logs", "-f", "4242")
    assert result.returncode == 1
    assert result.stderr.strip() == "gpugate: error: no job with id 4242"


def test_state_files_are_readable_by_their_owner_only(daemon: RunningDaemon) -> None:
    daemon.submit("true", gpus=0)
    for name in ("gpugate.db", "gpugate.sock", "gpugate.pid"):
        mode = (daemon.home / name).stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"
    # directories: never listable or writable by others; a root daemon lets its jobs'
    # owners traverse them to their own job directories (0711)
    for directory in (daemon.home, daemon.home / "jobs"):
        mode = directory.stat().st_mode & 0o777
        assert mode & 0o066 == 0, f"{directory} is {oct(mode)}"


def test_a_huge_log_comes_in_pages(daemon: RunningDaemon) -> None:
    """One answer holds at most 8 MiB (a job can make its log any size, and the daemon
    is shared); the client reads page after page to the end."""
    job = daemon.submit("head -c 9000000 /dev/zero", gpus=0)
    daemon.wait_state(job, "succeeded", timeout_s=30)
    first = daemon.client._call("GET", f"/v1/jobs/{job}/logs")
    assert len(first) == 8 * 1024 * 1024
    assert len(daemon.client.logs(job)) == 9_000_000
