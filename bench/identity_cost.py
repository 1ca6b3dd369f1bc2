#!/usr/bin/env python3
"""The cost of identity and permission checks per request, against the same request without.

The daemon reads each connection's peer credentials (``SO_PEERCRED``) when the connection
is made (``daemon/identity.py``), and every control request (hold, release, cancel, ...)
asks ``Service.authorize`` whether the caller owns the job or is an admin; a refusal is
appended to the audit log. Two parts:

* **micro**: that work alone, in process, timeit-style (each figure: the median over 9
  repeats of a loop of about 50 ms; also the fastest repeat): ``peer_credentials`` on a
  connected Unix socketpair, ``Authority.may_control`` for an owner, a non-owner and an
  admin-group member (the last two look the user's groups up in the group database when
  ``admin_group`` is set), ``user_name`` (the refusal message) and ``AuditLog.refused``.
* **end to end**: four daemons on ``sim:1x24GiB``, each in its own temp home: user mode
  (the default), a second user-mode daemon (a control: two identical daemons differ by
  this much), system mode (``serve --system --home``, as root, with a ``socket_group`` and
  an ``admin_group``), and a reference that is not a gpugate mode: user mode with the
  credential read and ``authorize`` patched out by this script (``IDENTITY_OFF``), since
  user mode runs the same identity code as system mode. Each holds a held job A and a held
  job B that runs after A (so releasing B never starts it). The owner's requests (the user
  running this script), through ``gpugate.client.Client``: GET show of A; POST release,
  then hold, of B; POST cancel of a job that does not exist (404: the route stops before
  the permission check). Then, to the system daemon only, from throw-away users (made with
  useradd, deleted at the end): a plain member of the socket group cancels B (refused: 403
  and an audit line) and a job that does not exist (404); a member of the admin group
  releases and holds B (not its own: the group lookup) and its own held job C (the owner's
  path). Every timed request runs in a fresh fork (``setuid`` for the other users), the
  daemons taking turns in blocks, so a drift of the machine touches all of them alike.

Needs root and useradd for the system mode and the other users; without them those rows
are skipped, with a message. Usage: bench/identity_cost.py [--rounds 1000]
"""

from __future__ import annotations

import argparse
import atexit
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    VENV_PY,
    BenchDaemon,
    Progress,
    header,
    machine_info,
    percentile,
    progress,
    table,
    write_json,
)

from gpugate.api.schemas import JobSubmission
from gpugate.client import ApiError, Client, http
from gpugate.daemon.identity import AuditLog, Authority, Peer, peer_credentials, user_name

# The reference daemon: gpugate's own serve, with the SO_PEERCRED protocol swapped for
# uvicorn's plain one and authorize reduced to its job lookup. Bench-only, never shipped.
IDENTITY_OFF = """
import sys
from gpugate.daemon import app, identity, service
app.http_protocol = lambda: identity.http_protocol().__mro__[1]
service.Service.authorize = lambda self, peer, action, job_id: self.job(job_id)
from gpugate.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
NO_SUCH_JOB = 999_999_999
BLOCKS = 8  # the modes take turns this many times
WARMUP = 20  # requests per case and mode, not counted


# ----------------------------------------------------------------------------- users
class Users:
    """Throw-away accounts: ``plain`` (socket group only) and ``admin`` (also the admin
    group), and both groups; removed at exit, Ctrl-C included."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.socket_group, self.admin_group = f"gib{tag}s", f"gib{tag}g"
        self.names = [f"gib{tag}p", f"gib{tag}a"]
        self._groups: list[str] = []
        atexit.register(self.remove)
        for group in (self.socket_group, self.admin_group):
            subprocess.run(["groupadd", group], check=True)
            self._groups.append(group)
        for name, extra in zip(self.names, ([], ["-G", self.admin_group]), strict=True):
            subprocess.run(
                ["useradd", "--no-create-home", "--no-user-group", "-g", self.socket_group,
                 *extra, "--shell", "/bin/sh", name],
                check=True,
            )  # fmt: skip
        self.plain, self.admin = (pwd.getpwnam(name) for name in self.names)

    def remove(self) -> None:
        for name in self.names:
            subprocess.run(["userdel", name], check=False, capture_output=True)
        for group in self._groups:
            subprocess.run(["groupdel", group], check=False, capture_output=True)
        self.names, self._groups = [], []


def can_make_users() -> bool:
    return os.geteuid() == 0 and shutil.which("useradd") is not None


# ----------------------------------------------------------------------------- micro
def per_call_s(fn: Callable[[], object], repeat: int = 9, loop_s: float = 0.05) -> list[float]:
    """Seconds per call of ``fn``, one figure per repeat of a loop of about ``loop_s``."""
    timer = timeit.Timer(fn)
    number = 1
    while timer.timeit(number) < loop_s / 5:
        number *= 2
    number = max(1, int(number * 5))
    return [t / number for t in timer.repeat(repeat, number)]


def micro_cases(users: Users | None, audit_dir: Path) -> dict[str, Callable[[], object]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    atexit.register(left.close)
    atexit.register(right.close)
    me = os.getuid()
    audit = AuditLog(audit_dir / "audit.log")
    peer = Peer(os.getpid(), me, os.getgid())
    raw = (socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    nobody = Authority("")  # no admin_group: root only
    cases: dict[str, Callable[[], object]] = {
        "getsockopt(SO_PEERCRED), raw": lambda: left.getsockopt(*raw),
        "peer_credentials(sock) (getsockopt + Peer)": lambda: peer_credentials(left),
        "may_control: owner": lambda: nobody.may_control(me, me),
        "may_control: root, not owner": lambda: nobody.may_control(0, 12345),
    }
    plain = 12345 if users is None else users.plain.pw_uid
    cases["may_control: not owner, no admin_group"] = lambda: nobody.may_control(plain, 0)
    if users is not None:
        admins, admin = Authority(users.admin_group), users.admin.pw_uid
        cases["may_control: not owner, not admin (group lookup)"] = lambda: admins.may_control(
            plain, 0
        )
        cases["may_control: admin-group member (group lookup)"] = lambda: admins.may_control(
            admin, 0
        )
    cases["user_name(uid) (pwd lookup, the refusal text)"] = lambda: user_name(me)
    cases["AuditLog.refused (one appended line)"] = lambda: audit.refused(
        peer, "cancel", 1, "job 1 belongs to someone else"
    )
    return cases


def run_micro(users: Users | None) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-identity-audit-") as audit_dir:
        for name, fn in micro_cases(users, Path(audit_dir)).items():
            times = per_call_s(fn)
            rows.append({"case": name, "median_us": statistics.median(times) * 1e6,
                         "min_us": min(times) * 1e6})  # fmt: skip
    return rows


# ------------------------------------------------------------------------ end to end
class ModeDaemon(BenchDaemon):
    """A BenchDaemon started with its own argv: user mode, system mode or the reference."""

    def __init__(self, name: str, mode: str, config: str = "") -> None:
        super().__init__("sim:1x24GiB", config=config, name=name)
        self.mode = mode

    def argv(self) -> list[str]:
        serve = ["serve", "--gpus", self.gpus, "--home", str(self.home)]
        if self.mode == "system":
            return [str(VENV_PY), "-m", "gpugate.cli.main", *serve, "--system"]
        if self.mode == "off":
            return [str(VENV_PY), "-c", IDENTITY_OFF, *serve]
        return [str(VENV_PY), "-m", "gpugate.cli.main", *serve]

    def start(self) -> ModeDaemon:
        with open(self.home / "daemon.log", "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), env=self.env, cwd=self.workdir, stdout=log, stderr=log,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self.socket.exists() or not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {(self.home / 'daemon.log').read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not answer within 60 s")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            self.client.health()
        except OSError:
            return False
        return True

    def held_pair(self) -> tuple[int, int]:
        """A held job A and a held job B after A: released, B waits on A, never starts."""
        a = self.submit("sleep 60", gpus=0, hold=True)
        b = self.submit("sleep 60", gpus=0, hold=True, after=[a])
        return a, b


def timed_calls(calls: list[tuple[str, Callable[[], object]]], times: dict[str, list[float]],
                rounds: int) -> None:  # fmt: skip
    """Each call ``rounds`` times in turn; its seconds appended to ``times[name]``."""
    for _ in range(rounds):
        for name, call in calls:
            started = time.perf_counter()
            call()
            times.setdefault(name, []).append(time.perf_counter() - started)


def refused(call: Callable[[], object], status: int) -> Callable[[], None]:
    def expect() -> None:
        try:
            call()
        except ApiError as exc:
            if exc.status != status:
                raise
        else:
            raise RuntimeError(f"expected HTTP {status}")

    return expect


OWNER_SHOW, OWNER_RELEASE, OWNER_HOLD, OWNER_404 = (
    "GET show of A (owner)",
    "POST release of B (owner)",
    "POST hold of B (owner)",
    "POST cancel, no such job (404)",
)
PLAIN_403, PLAIN_404 = (
    "plain user: POST cancel of B, refused (403)",
    "plain user: POST cancel, no such job (404)",
)
ADMIN_OWN, ADMIN_OTHER = (
    "admin user: POST release/hold of own job C",
    "admin user: POST release/hold of B (not owner)",
)
Calls = list[tuple[str, Callable[[], object]]]


def owner_calls(client: Client, a: int, b: int) -> Calls:
    return [
        (OWNER_SHOW, lambda: client.show(a)),
        (OWNER_RELEASE, lambda: client.release(b)),
        (OWNER_HOLD, lambda: client.hold(b)),
        (OWNER_404, refused(lambda: client.cancel(NO_SUCH_JOB), 404)),
    ]


def plain_calls(client: Client, b: int) -> Calls:
    return [
        (PLAIN_403, refused(lambda: client.cancel(b), 403)),
        (PLAIN_404, refused(lambda: client.cancel(NO_SUCH_JOB), 404)),
    ]


def admin_calls(client: Client, b: int, c: int) -> Calls:
    return [
        (ADMIN_OWN, lambda: client.release(c)),
        (ADMIN_OWN, lambda: client.hold(c)),
        (ADMIN_OTHER, lambda: client.release(b)),
        (ADMIN_OTHER, lambda: client.hold(b)),
    ]


def as_user(user: pwd.struct_passwd | None, work: Callable[[], Any]) -> Any:
    """Run ``work`` in a fork that really is ``user`` (uid, gid, groups; None: this
    process's user); its JSON result back. A fork, not an exec: a root-owned virtualenv
    need not be readable by that user."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)  # the parent cleans up, not this child
            os.close(read_end)
            if user is not None:
                os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
            with os.fdopen(write_end, "w") as out:
                json.dump(work(), out)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as data:
        text = data.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the requests as {user.pw_name if user else 'us'} failed")
    return json.loads(text)


def own_held_job(daemon: ModeDaemon, user: pwd.struct_passwd, after: int) -> int:
    """A held job C that ``user`` submits (so owns), after A: it never starts either."""

    def work() -> int:
        client = Client(daemon.socket, timeout_s=30)
        job = JobSubmission(command="sleep 60", cwd="/", gpus=0, hold=True, after=[after])
        return client.submit([job])[0].id

    job_id: int = as_user(user, work)
    return job_id


def timed_as(user: pwd.struct_passwd | None, calls: Callable[[Client], Calls],
             socket_path: Path, rounds: int) -> dict[str, list[float]]:  # fmt: skip
    """``timed_calls`` in a fresh fork that is ``user`` (None: this process's user). Every
    timed request runs in such a fork: a first run that timed root's requests in this
    process saw those after a fork pay for copy-on-write faults, a bias of ~50 us."""

    def work() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {}
        timed_calls(calls(Client(socket_path, timeout_s=30)), times, rounds)
        return times

    result: dict[str, list[float]] = as_user(user, work)
    return result


Player = tuple[str, Callable[[int], dict[str, list[float]]]]  # (mode, count -> times)


def take_turns(players: list[Player], rounds: int, label: str,
               times: dict[str, dict[str, list[float]]]) -> None:  # fmt: skip
    """A warm-up block, then BLOCKS blocks in which each player times ``rounds / BLOCKS``
    rounds, the order rotating, so a drift of the machine touches every player alike."""
    bar = Progress(label, BLOCKS + 1, every=1)
    for _, play in players:
        play(WARMUP)
    bar.step(1)
    for block in range(BLOCKS):
        turn = block % len(players)
        for mode, play in players[turn:] + players[:turn]:
            for name, values in play(max(1, rounds // BLOCKS)).items():
                times[mode].setdefault(name, []).extend(values)
        bar.step(block + 2)


def run_end_to_end(
    daemons: dict[str, ModeDaemon], users: Users | None, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """{mode: {case: seconds per request}}. Two phases: root's requests to every daemon,
    then the other users' to the system daemon. Not mixed: a daemon that also serves the
    other users' forks answered root ~50 us faster (warmer, we think) in a first version."""
    jobs = {mode: d.held_pair() for mode, d in daemons.items()}
    times: dict[str, dict[str, list[float]]] = {mode: {} for mode in daemons}
    owners: list[Player] = [
        (mode, partial(timed_as, None, partial(owner_calls, a=a, b=b), daemons[mode].socket))
        for mode, (a, b) in jobs.items()
    ]
    take_turns(owners, rounds, "end to end, root's requests to each daemon", times)
    if users is not None:
        system, (a, b) = daemons["system"].socket, jobs["system"]
        c = own_held_job(daemons["system"], users.admin, a)
        others: list[Player] = [
            ("system", partial(timed_as, users.plain, partial(plain_calls, b=b), system)),
            ("system", partial(timed_as, users.admin, partial(admin_calls, b=b, c=c), system)),
        ]
        take_turns(others, rounds, "end to end, other users' requests", times)
    return times


def stats_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "median_ms": statistics.median(ms), "p95_ms": percentile(ms, 95)}


# --------------------------------------------------------------------------- report
def print_micro(rows: list[dict[str, Any]]) -> None:
    print("micro: the identity work alone, in process (median of 9 repeats; per call)")
    cells = [[r["case"], f"{r['median_us']:.2f}", f"{r['min_us']:.2f}"] for r in rows]
    print(table(["work", "median us", "fastest us"], cells))
    print()


MODE_NAMES = {
    "off": "reference: identity off",
    "user": "user mode",
    "user2": "user mode, 2nd daemon",
    "system": "system mode",
}
Summary = dict[str, dict[str, dict[str, float]]]


def print_end_to_end(summary: Summary) -> None:
    print("end to end: one request through gpugate.client.Client (ms; median / p95)")
    cases = list(dict.fromkeys(case for mode in summary.values() for case in mode))
    rows = []
    for case in cases:
        cells = [case]
        for mode in summary:
            got = summary[mode].get(case)
            cells.append(f"{got['median_ms']:.3f} / {got['p95_ms']:.3f}" if got else "-")
        rows.append(cells)
    print(table(["request", *(MODE_NAMES[m] for m in summary)], rows))
    print()


def print_differences(summary: Summary) -> None:
    print("differences of medians (us):")
    rows = [
        [case, _diff(summary, "user", case, "off", case),
         _diff(summary, "user2", case, "user", case),
         _diff(summary, "system", case, "user", case)]
        for case in (OWNER_SHOW, OWNER_RELEASE, OWNER_HOLD, OWNER_404)
    ]  # fmt: skip
    headers = ["request", "user - off", "control: 2nd user daemon - user", "system - user"]
    print(table(headers, rows))
    if "system" in summary:
        print(table(["system mode, another user", "difference"], [
            ["refused cancel (403) - cancel of no such job (404)",
             _diff(summary, "system", PLAIN_403, "system", PLAIN_404)],
            ["admin, not owner - owner (release/hold)",
             _diff(summary, "system", ADMIN_OTHER, "system", ADMIN_OWN)],
        ]))  # fmt: skip
    print()


def _diff(summary: Summary, mode_a: str, case_a: str, mode_b: str, case_b: str) -> str:
    try:
        a, b = summary[mode_a][case_a], summary[mode_b][case_b]
    except KeyError:
        return "-"
    return f"{(a['median_ms'] - b['median_ms']) * 1000:+.0f}"


def connection_note() -> str:
    import inspect

    per_request = "Connection: close" in inspect.getsource(http.send)
    if per_request:
        return (
            "note: the peer credentials are read once per connection, and the client opens"
            " a new connection for every request (Connection: close), so every request"
            " above pays for one SO_PEERCRED read."
        )
    return "note: the client may reuse connections: SO_PEERCRED is read once per connection."


# ----------------------------------------------------------------------------- main
def start_daemons(users: Users | None) -> dict[str, ModeDaemon]:
    daemons = {
        "off": ModeDaemon("identity-off", "off"),
        "user": ModeDaemon("identity-user", "user"),
        "user2": ModeDaemon("identity-user2", "user"),
    }
    if users is not None:
        config = f'socket_group = "{users.socket_group}"\nadmin_group = "{users.admin_group}"\n'
        daemons["system"] = ModeDaemon("identity-system", "system", config)
    for daemon in daemons.values():
        daemon.start()
    return daemons


def check_modes(daemons: dict[str, ModeDaemon], users: Users | None) -> None:
    """The system daemon's socket is the group's (0660); user mode's is owner-only."""
    for mode, daemon in daemons.items():
        st = daemon.socket.stat()
        group = grp.getgrgid(st.st_gid).gr_name
        progress(f"{MODE_NAMES[mode]}: socket mode {st.st_mode & 0o777:o}, group {group}")
    if users is not None:
        assert daemons["system"].socket.stat().st_mode & 0o777 == 0o660


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1000, help="requests per case and mode")
    args = parser.parse_args()
    info = machine_info()
    header("identity and permission checks: cost per request", info)
    users = Users() if can_make_users() else None
    if users is None:
        print("not root, or no useradd: system mode and the other users' rows are SKIPPED\n")
    progress("micro benchmarks")
    micro = run_micro(users)
    print_micro(micro)
    daemons = start_daemons(users)
    check_modes(daemons, users)
    times = run_end_to_end(daemons, users, args.rounds)
    summary = {mode: {k: stats_ms(v) for k, v in cases.items()} for mode, cases in times.items()}
    print_end_to_end(summary)
    print_differences(summary)
    print(connection_note())
    audit = daemons["system"].home / "audit.log" if "system" in daemons else None
    if audit is not None:
        lines = len(audit.read_text().splitlines()) if audit.exists() else 0
        print(f"system mode audit log: {lines} refusal lines (warm-up included)")
    write_json("identity_cost", {"machine": info, "rounds": args.rounds, "micro": micro,
                                 "end_to_end": summary})  # fmt: skip
    for daemon in daemons.values():
        daemon.close()
    if users is not None:
        users.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
