"""The ``gpugate`` command line. Talks to the daemon only through ``gpugate.Client``.

Imports are lazy: a cold ``gpugate submit`` or ``gpugate ls`` must take well under 150 ms,
so the daemon's dependencies (uvicorn, starlette, sqlite) are never imported here unless
the command is ``serve``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpugate.client import Client

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as ``gpugate: error: ...``, exit status 1 (or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _size(text: str) -> int:
    from gpugate.units import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _percent(text: str) -> float:
    from gpugate.units import parse_percent

    try:
        return parse_percent(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _job_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a job id: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"job ids start at 1, not {value}")
    return value


# ------------------------------------------------------------------------------ commands
def cmd_serve(args: argparse.Namespace) -> int:
    from gpugate.daemon.paths import StatePaths

    paths = StatePaths(args.home) if args.home else StatePaths.default()
    overrides = {
        "gpus": args.gpus,
        "util_headroom_pct": args.util_headroom,
        "mem_headroom_pct": args.mem_headroom,
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
    )
    # the submitter's environment travels once for the whole batch
    jobs = client.submit([JobSubmission(command=c, **common) for c in commands], dict(os.environ))
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


def _each(ids: Sequence[int], act: Callable[[int], Any], verb: str) -> int:
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
    return _each(args.ids, client.cancel, "cancel")


def cmd_hold(args: argparse.Namespace, client: Client) -> int:
    return _each(args.ids, client.hold, "hold")


def cmd_release(args: argparse.Namespace, client: Client) -> int:
    return _each(args.ids, client.release, "release")


def cmd_priority(args: argparse.Namespace, client: Client) -> int:
    job = client.set_priority(args.id, args.priority)
    print(f"job {job.id}: priority {job.priority}")
    return 0


def cmd_wait(args: argparse.Namespace, client: Client) -> int:
    from gpugate.cli.follow import wait_all

    return wait_all(client, args.ids, args.timeout, quiet=args.quiet)


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


# -------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpugate",
        description="Start GPU work when it is safe, where it fits, in priority order.",
    )
    parser.add_argument(
        "--socket", help="daemon socket (default: $GPUGATE_SOCKET or $GPUGATE_HOME/gpugate.sock)"
    )
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the daemon (embedded SQLite; GPUs auto-detected)")
    p.add_argument("--gpus", help="auto (default), sim:2x24GiB, nvml, nvidia-smi, amd, apple")
    p.add_argument(
        "--home", help="state directory (default: $GPUGATE_HOME or ~/.local/state/gpugate)"
    )
    p.add_argument("--util-headroom", type=_percent, metavar="PCT", help="default 90")
    p.add_argument("--mem-headroom", type=_percent, metavar="PCT", help="default 90")
    p.add_argument(
        "--detach", action="store_true", help="run in the background; return once it answers"
    )
    p.set_defaults(func=cmd_serve, needs_client=False)

    p = sub.add_parser("submit", help="queue a command (or one per line of --file)")
    p.add_argument("-p", "--priority", type=int, default=0, help="higher runs first (default 0)")
    p.add_argument("--gpus", type=int, default=1, help="distinct GPUs (0: CPU-only; default 1)")
    p.add_argument("--mem", type=_size, help="expected memory per GPU, e.g. 10GiB")
    p.add_argument("--util", type=_percent, help="expected utilization per GPU, percent")
    p.add_argument("--exclusive", action="store_true", help="a GPU to itself")
    p.add_argument(
        "--after", type=_job_id, action="append", metavar="ID", help="start after job ID succeeded"
    )
    p.add_argument("--name", help="a label shown by ls")
    p.add_argument("--hold", action="store_true", help="queue it held (release to start)")
    p.add_argument("--file", "-f", help="one command per line ('-' for stdin)")
    p.add_argument("--json", action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("ls", help="queue, running and recent jobs, with why each waits")
    p.add_argument("--json", action="store_true")
    p.add_argument("--recent", type=int, help="finished jobs to show (default 50)")
    p.add_argument("--state", action="append", help="only jobs in this state (repeatable)")
    p.add_argument("--queued", type=int, default=200, help="queued jobs shown, next first (200)")
    p.add_argument("--all", action="store_true", help="every queued job")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", help="one job: spec, history, GPUs, exit code, peaks")
    p.add_argument("id", type=_job_id)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("logs", help="a job's stdout and stderr")
    p.add_argument("id", type=_job_id)
    p.add_argument("-f", "--follow", action="store_true", help="stream until the job ends")
    p.add_argument("--stderr", action="store_true", help="stderr only")
    p.set_defaults(func=cmd_logs)

    for name, func, text in (
        ("cancel", cmd_cancel, "SIGTERM to the job's process group, grace, SIGKILL"),
        ("hold", cmd_hold, "keep queued jobs from starting"),
        ("release", cmd_release, "let held jobs start"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("ids", type=_job_id, nargs="+", metavar="ID")
        p.set_defaults(func=func)

    p = sub.add_parser("priority", help="change a job's priority")
    p.add_argument("id", type=_job_id)
    p.add_argument("priority", type=int)
    p.set_defaults(func=cmd_priority)

    p = sub.add_parser("wait", help="wait for jobs; exit with the (first non-zero) exit code")
    p.add_argument("ids", type=_job_id, nargs="+", metavar="ID")
    p.add_argument("--timeout", type=float, help="seconds; exit 124 if jobs still run")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("gpus", help="what the monitor sees: util, memory, processes, ours or not")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gpus)

    p = sub.add_parser("sim", help="simulated GPUs: inject outside load, or declare a job's use")
    simsub = p.add_subparsers(dest="sim_command", required=True)
    q = simsub.add_parser("load", help="outside load on a simulated GPU (counts until cleared)")
    q.add_argument("--gpu", default="0", help="index or UUID")
    q.add_argument("--mem", type=_size)
    q.add_argument("--util", type=_percent)
    q.add_argument("--name", default="external")
    q = simsub.add_parser("clear", help="remove injected load (all, or --name)")
    q.add_argument("--name")
    q = simsub.add_parser("use", help="inside a job: this job now uses this much of its GPUs")
    q.add_argument("--mem", type=_size)
    q.add_argument("--util", type=_percent)
    q.add_argument(
        "--pid", type=int, help="the process that uses it (default: the caller's parent)"
    )
    p.set_defaults(func=cmd_sim, needs_client=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return _dispatch(args)
    except CliError as exc:
        print(f"gpugate: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if not getattr(args, "needs_client", True):
        return int(args.func(args))
    from gpugate.client import ApiError, Client, DaemonNotRunning

    if args.cmd == "sim" and args.sim_command == "use":
        return int(args.func(args, None))
    client = Client(args.socket)
    try:
        return int(args.func(args, client))
    except DaemonNotRunning as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except ApiError as exc:
        raise CliError(exc.message) from None


if __name__ == "__main__":
    sys.exit(main())
