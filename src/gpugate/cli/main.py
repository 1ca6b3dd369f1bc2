"""The ``gpugate`` command line. Talks to the daemon only through ``gpugate.Client``.

Imports are lazy: a cold ``gpugate submit`` or ``gpugate ls`` must take well under 150 ms,
so the daemon's dependencies (uvicorn, starlette, sqlite) are never imported here unless
the command is ``serve``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gpugate.cli.commands import (
    cmd_cancel,
    cmd_checkpoint,
    cmd_gpus,
    cmd_hold,
    cmd_logs,
    cmd_ls,
    cmd_priority,
    cmd_release,
    cmd_resume,
    cmd_serve,
    cmd_show,
    cmd_sim,
    cmd_submit,
    cmd_suspend,
    cmd_token,
    cmd_top,
    cmd_wait,
)
from gpugate.cli.errors import EXIT_USAGE, CliError


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
    p.add_argument(
        "--system",
        action="store_true",
        help="system mode, as root: state in /var/lib/gpugate, socket /run/gpugate/gpugate.sock"
        " for socket_group, jobs run as their submitters",
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
    p.add_argument(
        "--preempt",
        choices=("never", "checkpoint", "suspend", "requeue"),
        default=None,
        help="what gpugate may do to make room (default: the daemon's default_preempt,"
        " never unless configured; checkpoint: SIGUSR1, save, exit 75, requeued and"
        " resumed with GPUGATE_RESUME=1)",
    )
    p.add_argument("--checkpoint", metavar="PATH", help="where the job saves (GPUGATE_CHECKPOINT)")
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
        ("suspend", cmd_suspend, "SIGSTOP a running job: frees compute, keeps GPU memory"),
        ("resume", cmd_resume, "SIGCONT a suspended job"),
        ("checkpoint", cmd_checkpoint, "ask a --preempt checkpoint job to save and requeue"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("ids", type=_job_id, nargs="+", metavar="ID")
        p.set_defaults(func=func)

    p = sub.add_parser("token", help="a token for the HTTP API on TCP (the dashboard)")
    p.add_argument("--revoke", action="store_true", help="revoke your token instead")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("priority", help="change a job's priority")
    p.add_argument("id", type=_job_id)
    p.add_argument("priority", type=int)
    p.set_defaults(func=cmd_priority)

    p = sub.add_parser("wait", help="wait for jobs; exit with the (first non-zero) exit code")
    p.add_argument("ids", type=_job_id, nargs="+", metavar="ID")
    p.add_argument("--timeout", type=float, help="seconds; exit 124 if jobs still run")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("top", help="live full-screen view of the GPUs and the queue")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("gpus", help="what the monitor sees: util, memory, processes, ours or not")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gpus)

    p = sub.add_parser(
        "sim",
        help="the simulator (run, report, policies); simulated GPUs of a daemon (load, clear, use)",
    )
    simsub = p.add_subparsers(dest="sim_command", required=True)
    _add_simulator_commands(simsub)
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
    from gpugate.cli.offload import add_offload_commands

    add_offload_commands(sub)
    return parser


def _add_simulator_commands(simsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from gpugate.cli.simulate import (
        add_simulation_options,
        cmd_sim_policies,
        cmd_sim_report,
        cmd_sim_run,
    )

    q = simsub.add_parser("run", help="compare policies on a workload (`gpugate sim --trace ...`)")
    add_simulation_options(q, _size)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_sim_run, needs_client=False)
    q = simsub.add_parser("report", help="run a comparison and write a Markdown report with charts")
    add_simulation_options(q, _size)
    q.add_argument("--out", default="sim-report", help="directory (default ./sim-report)")
    q.set_defaults(func=cmd_sim_report, needs_client=False)
    q = simsub.add_parser("policies", help="the policies the simulator knows")
    q.set_defaults(func=cmd_sim_policies, needs_client=False)


def _with_default_sim_command(argv: list[str]) -> list[str]:
    """``gpugate sim --trace x ...`` means ``gpugate sim run --trace x ...``."""
    if (
        len(argv) >= 2
        and argv[0] == "sim"
        and argv[1].startswith("-")
        and argv[1] not in ("-h", "--help")
    ):
        return ["sim", "run", *argv[1:]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(
        _with_default_sim_command(list(sys.argv[1:] if argv is None else argv))
    )
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
