"""What each ``gpugate`` subcommand does; talks to the daemon only through the client.

Imports stay inside the commands: each pays only for what it uses.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpugate.cli.errors import EXIT_USAGE, CliError

if TYPE_CHECKING:
    from gpugate.client import Client


def cmd_serve(args: argparse.Namespace) -> int:
    from gpugate.daemon.paths import StatePaths

    if args.system and os.geteuid() != 0:
        raise CliError("serve --system runs as root (it runs jobs as their submitters)")
    if args.home:
        paths = StatePaths(Path(args.home))
    else:
        paths = StatePaths.system() if args.system else StatePaths.default()
    overrides = {
        "gpus": args.gpus,
        "util_headroom_pct": args.util_headroom,
        "mem_headroom_pct": args.mem_headroom,
        "system": args.system or None,
    }
    if args.detach:
        from gpugate.cli.detach import start_detached

        return start_detached(paths, sys.argv[1:])
    from gpugate.daemon.config import ConfigError
    from gpugate.daemon.main import serve

    try:
        return serve(paths, overrides)
    except ConfigError as exc:
        raise CliError(f"configuration: {exc}") from None


def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    from gpugate.api.schemas import JobSubmission

    commands = _commands(args)
    common: dict[str, Any] = dict(
        cwd=os.getcwd(),
        priority=args.priority,
        gpus=args.gpus,
        mem_bytes=args.mem,
        util_pct=args.util,
        exclusive=args.exclusive,
        after=args.after or [],
        name=args.name or "",
        hold=args.hold,
        preempt=args.preempt,
        checkpoint_path=_absolute(args.checkpoint),
    )
    # the submitter's environment travels once for the whole batch
    batch = [JobSubmission(command=c, **common) for c in commands]
    with _batch_progress(len(batch)):
        jobs = client.submit(batch, dict(os.environ))
    if args.json:
        _print_json(jobs)
    elif len(jobs) == 1:
        job = jobs[0]
        print(
            f"job {job.id} {job.state}" + (f": {job.reason}" if job.reason != "submitted" else "")
        )
    else:
        print(f"submitted {len(jobs)} jobs: {jobs[0].id}-{jobs[-1].id}")
    return 0


@contextlib.contextmanager
def _batch_progress(count: int) -> Iterator[None]:
    """A big batch is one request (all or none), so its progress is its elapsed time:
    said on a terminal's stderr while it is sent and stored."""
    if count < BIG_BATCH or not sys.stderr.isatty():
        yield
        return
    started = time.monotonic()
    print(f"submitting {count} jobs (one batch: all or none)...", end="", file=sys.stderr)
    sys.stderr.flush()
    try:
        yield
    finally:
        print(f" {time.monotonic() - started:.1f} s", file=sys.stderr)


BIG_BATCH = 1000


def _commands(args: argparse.Namespace) -> list[str]:
    import shlex

    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if args.file and argv:
        raise CliError("give either --file or a command, not both", EXIT_USAGE)
    if args.file:
        return _read_command_file(args.file)
    if not argv:
        raise CliError("no command given (example: gpugate submit -- python train.py)", EXIT_USAGE)
    # one argument is taken as a shell line ("a && b"); several are quoted as they came
    return [argv[0]] if len(argv) == 1 else [shlex.join(argv)]


def _read_command_file(path: str) -> list[str]:
    try:
        with open(path if path != "-" else "/dev/stdin") as source:
            lines = [line.strip() for line in source]
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    commands = [line for line in lines if line and not line.startswith("#")]
    if not commands:
        raise CliError(f"{path} holds no command (one per line; # starts a comment)")
    return commands


def cmd_ls(args: argparse.Namespace, client: Client) -> int:
    from gpugate.cli.format import jobs_table

    queued = None if args.all else args.queued
    listing = client.jobs(recent=args.recent, states=args.state or (), queued=queued)
    if args.json:
        _print_json(listing)
        return 0
    print(jobs_table(listing.jobs) if listing.jobs else "no jobs")
    if listing.counts:
        print("\n" + ", ".join(f"{n} {state}" for state, n in sorted(listing.counts.items())))
    shown = sum(1 for j in listing.jobs if j.state == "queued")
    hidden = listing.counts.get("queued", 0) - shown
    if hidden > 0 and not args.state:
        print(f"({hidden} more queued jobs not shown: gpugate ls --all)")
    return 0


def cmd_show(args: argparse.Namespace, client: Client) -> int:
    from gpugate.cli.format import job_detail

    detail = client.show(args.id)
    if args.json:
        _print_json(detail)
    else:
        print(job_detail(detail))
    return 0


def cmd_logs(args: argparse.Namespace, client: Client) -> int:
    streams = ["stderr"] if args.stderr else ["stdout", "stderr"]
    if not args.follow:
        for stream in streams:
            target = sys.stdout if stream == "stdout" else sys.stderr
            target.buffer.write(client.logs(args.id, stream))
            target.flush()
        return 0
    from gpugate.cli.follow import follow

    return follow(client, args.id, streams)


def _each(ids: Sequence[int], act: Callable[[int], Any]) -> int:
    """Apply an action to every id; report each failure and keep going."""
    from gpugate.client import ApiError

    failed = 0
    for job_id in ids:
        try:
            job = act(job_id)
        except ApiError as exc:
            print(f"gpugate: error: {exc.message}", file=sys.stderr)
            failed += 1
        else:
            print(f"job {job.id}: {job.state}" + (f" ({job.reason})" if job.reason else ""))
    return 1 if failed else 0


def cmd_cancel(args: argparse.Namespace, client: Client) -> int:
    return _each(args.ids, client.cancel)


def cmd_hold(args: argparse.Namespace, client: Client) -> int:
    return _each(args.ids, client.hold)


def cmd_release(args: argparse.Namespace, client: Client) -> int:
    return _each(args.ids, client.release)


def cmd_suspend(args: argparse.Namespace, client: Client) -> int:
    return _each(args.ids, client.suspend)


def cmd_resume(args: argparse.Namespace, client: Client) -> int:
    return _each(args.ids, client.resume)


def cmd_checkpoint(args: argparse.Namespace, client: Client) -> int:
    return _each(args.ids, client.checkpoint)


def cmd_token(args: argparse.Namespace, client: Client) -> int:
    """Make (or revoke) the caller's token; it is kept in a file only they can read."""
    path = token_path()
    if args.revoke:
        revoked = client.revoke_token()
        path.unlink(missing_ok=True)
        print("token revoked" if revoked else "you had no token")
        return 0
    made = client.create_token()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(made.token + "\n")
    print(f"token written to {path} (mode 0600); it replaces any earlier one")
    print("use it as: Authorization: Bearer <token>")
    return 0


def token_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "gpugate" / "token"


def cmd_priority(args: argparse.Namespace, client: Client) -> int:
    job = client.set_priority(args.id, args.priority)
    print(f"job {job.id}: priority {job.priority}")
    return 0


def cmd_wait(args: argparse.Namespace, client: Client) -> int:
    from gpugate.cli.follow import wait_all

    return wait_all(client, args.ids, args.timeout, quiet=args.quiet)


def cmd_top(args: argparse.Namespace, client: Client) -> int:
    from gpugate.cli.top import run_top

    if args.interval <= 0:
        raise CliError("--interval must be a positive number of seconds")
    return run_top(client, args.interval, args.once)


def cmd_gpus(args: argparse.Namespace, client: Client) -> int:
    from gpugate.cli.format import gpus_table

    gpus = client.gpus()
    if args.json:
        _print_json(gpus)
    else:
        print(gpus_table(gpus))
    return 0


def cmd_sim(args: argparse.Namespace, client: Client | None) -> int:
    from gpugate.api.schemas import SimLoadRequest

    if args.sim_command == "use":
        from gpugate.gpu.sim import SimOutOfMemory, report_usage

        try:
            report_usage(args.mem or 0, args.util or 0.0, pid=args.pid)
        except SimOutOfMemory as exc:
            print(f"RuntimeError: {exc}", file=sys.stderr)
            return 1
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
        return 0
    assert client is not None
    if args.sim_command == "load":
        request = SimLoadRequest(
            gpu=args.gpu, mem_bytes=args.mem or 0, util_pct=args.util or 0.0, name=args.name
        )
    else:
        request = SimLoadRequest(gpu="0", name=args.name, clear=True)
    from gpugate.cli.format import gpus_table

    print(gpus_table(client.sim_load(request)))
    return 0


def _print_json(value: Any) -> None:
    import msgspec

    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(value), indent=2) + b"\n")


def _absolute(path: str | None) -> str:
    """The checkpoint path as the job will see it: relative to where submit ran."""
    return os.path.abspath(path) if path else ""
