"""``gpugate offload calibrate|show|explain|reset``: the offload runtime's learned model.

No daemon needed: these work on the model file of this machine. NumPy and Numba (the
``[offload]`` extra) are imported only here, so other commands stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from gpugate.cli.errors import EXIT_USAGE, CliError
from gpugate.cli.progress import StatusLine
from gpugate.units import format_bytes

if TYPE_CHECKING:
    from gpugate.offload.builtin import Sweep
    from gpugate.offload.runtime import Runtime


def add_offload_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("offload", help="the offload runtime's learned cost model (calibrate, show)")
    osub = p.add_subparsers(dest="offload_command", required=True)
    q = osub.add_parser("calibrate", help="measure the built-in tasks and teach the model")
    q.add_argument("--kinds", help="comma-separated (default: all; see `gpugate offload show`)")
    q.add_argument(
        "--dtypes", default="float32", help="comma-separated: float32,float64 (default float32)"
    )
    q.add_argument("--repeats", type=int, default=3, help="runs per variant and size (default 3)")
    q.add_argument("--quick", action="store_true", help="small sizes only (seconds, for a try)")
    q.add_argument("--no-load", action="store_true", help="idle machine only (no busy-CPU phase)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_offload_calibrate, needs_client=False)
    q = osub.add_parser("show", help="what was learned: per task, predicted times and the choice")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_offload_show, needs_client=False)
    q = osub.add_parser("explain", help="how a built-in task of one size would be decided now")
    q.add_argument("kind", help="matmul, gaussian_blur, sobel or nbody")
    q.add_argument("size", type=int, help="matrix side, image height, or bodies")
    q.add_argument("--dtype", default="float32")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_offload_explain, needs_client=False)
    q = osub.add_parser("reset", help="start learning afresh (the old file is kept aside)")
    q.set_defaults(func=cmd_offload_reset, needs_client=False)


def _runtime(read_only: bool = False, **options: Any) -> Runtime:
    """This machine's runtime; ``read_only``: its model file is read, never written."""
    _need_offload_extra()
    from gpugate.offload.devices import CpuDevice
    from gpugate.offload.runtime import Runtime
    from gpugate.offload.store import ModelStore

    return Runtime(store=ModelStore.of_machine(CpuDevice().label, read_only), **options)


def _need_offload_extra() -> None:
    try:
        import gpugate.offload.builtin  # noqa: F401 - NumPy and Numba, with the kernels
    except ImportError as exc:
        raise CliError(
            f"the offload runtime needs the [offload] extra: pip install 'gpugate[offload]' ({exc})"
        ) from None


def _sweeps(kinds: str | None) -> list[Sweep]:
    _need_offload_extra()
    from gpugate.offload.builtin import CALIBRATION

    names = kinds.split(",") if kinds else list(CALIBRATION)
    unknown = [k for k in names if k not in CALIBRATION]
    if unknown:
        known = ", ".join(CALIBRATION)
        raise CliError(f"unknown task kind {', '.join(unknown)} (known: {known})", EXIT_USAGE)
    return [CALIBRATION[k] for k in names]


def _dtypes(text: str) -> list[str]:
    from gpugate.offload.builtin import DTYPES

    names = text.split(",")
    if bad := [d for d in names if d not in DTYPES]:
        raise CliError(f"unknown dtype {', '.join(bad)} (float32, float64)", EXIT_USAGE)
    return names


# -------------------------------------------------------------------------- calibrate
def cmd_offload_calibrate(args: argparse.Namespace) -> int:
    sweeps, dtypes = _sweeps(args.kinds), _dtypes(args.dtypes)
    if args.repeats < 1:
        raise CliError("--repeats must be at least 1", EXIT_USAGE)
    from gpugate.offload.calibrate import calibrate, phases

    runtime = _runtime()
    try:
        cpu_loads = [] if args.no_load else [runtime.state.current.cpu_count]
        gpu_duty = 0.6 if runtime.gpus and not args.no_load else None
        conditions = phases(cpu_loads, gpu_duty, [g.index for g in runtime.gpus.values()])
        if not runtime.gpus:
            print(
                f"no GPU here ({runtime.no_gpu_reason}): calibrating CPU variants", file=sys.stderr
            )
        progress = _Progress()
        result = calibrate(
            runtime,
            sweeps,
            quick=args.quick,
            repeats=args.repeats,
            dtypes=dtypes,
            conditions=conditions,
            progress=progress,
        )
        progress.close()
        where = runtime.store.path if runtime.store else "memory"
        if args.json:
            print(
                json.dumps(
                    {
                        "runs": result.runs,
                        "seconds": result.seconds,
                        "by_variant": result.by_variant,
                        "model": str(where),
                    }
                )
            )
        else:
            print(f"{result.runs} runs in {result.seconds:.1f} s; the model is in {where}")
            print(_show_text(runtime, sweeps, dtypes, quick=args.quick))
    finally:
        runtime.close()
    return 0


class _Progress:
    """Calibration's progress line: which run, of how many, on what."""

    def __init__(self) -> None:
        self.line = StatusLine(width=100)

    def __call__(self, done: int, total: int, what: str) -> None:
        if self.line.due():
            text = f"[{done}/{total}] {what} ({self.line.elapsed_s:.0f} s)"
            self.line.write(text[: self.line.width])

    def close(self) -> None:
        self.line.close()


# ------------------------------------------------------------------------------- show
def cmd_offload_show(args: argparse.Namespace) -> int:
    from gpugate.offload.builtin import CALIBRATION

    runtime = _runtime(read_only=True)
    try:
        if args.json:
            print(json.dumps(_show_data(runtime), indent=2))
        else:
            where = runtime.store.path if runtime.store else "memory"
            print(f"model file: {where} ({len(runtime.history)} measurements kept)")
            dtypes = sorted({m.dtype for m in runtime.history}) or ["float32"]
            print(_show_text(runtime, list(CALIBRATION.values()), dtypes))
    finally:
        runtime.close()
    return 0


def _show_data(runtime: Runtime) -> dict[str, Any]:
    return {
        "model_file": str(runtime.store.path) if runtime.store else None,
        "measurements": len(runtime.history),
        "models": {
            key: {
                "observations": m.observations,
                "noise_sd": m.noise_var**0.5,
                "weights": list(m.weights),
            }
            for key, m in sorted(runtime.book.models.items())
        },
    }


def _show_text(
    runtime: Runtime, sweeps: list[Sweep], dtypes: list[str], quick: bool = False
) -> str:
    """Per task and dtype: the predicted time of each variant at each calibration size
    (``quick``: the quick calibration's) on an idle machine, the one that would be
    chosen marked."""
    from gpugate.offload.builtin import DTYPES
    from gpugate.offload.explain import format_seconds
    from gpugate.offload.state import idle_state

    lines = []
    for sweep in sweeps:
        for dtype in dtypes:
            lines.append(f"\n{sweep.task.kind} ({dtype}), predicted on an idle machine:")
            for size in sweep.quick_sizes if quick else sweep.sizes:
                args = sweep.inputs(size, DTYPES[dtype])
                exp = runtime.explain_in(sweep.task, args, {}, idle_state())
                cells = [
                    f"{'*' if o.chosen else ' '}{o.variant}@{o.device} {format_seconds(o.finish_s)}"
                    + (f" ({o.observations} runs)" if o.observations else " (never run)")
                    for o in exp.options
                ]
                lines.append(f"  {sweep.unit}={size:<6} " + "   ".join(cells))
    return "\n".join(lines).lstrip("\n")


# ---------------------------------------------------------------------------- explain
def cmd_offload_explain(args: argparse.Namespace) -> int:
    if "," in args.kind:
        raise CliError("explain takes one task kind", EXIT_USAGE)
    sweep = _sweeps(args.kind)[0]
    dtype = _dtypes(args.dtype)[0]
    if args.size < 1:
        raise CliError("the size must be at least 1", EXIT_USAGE)
    import numpy as np
    import psutil

    from gpugate.offload.builtin import DTYPES

    # explain builds real inputs of that size: refuse what would not fit in memory
    needed = sweep.input_bytes(args.size, np.dtype(DTYPES[dtype]).itemsize)
    if needed > psutil.virtual_memory().available // 2:
        raise CliError(
            f"{sweep.describe(args.size)} needs {format_bytes(needed)} of inputs, more than"
            " half the memory available here",
            EXIT_USAGE,
        )
    runtime = _runtime(read_only=True)
    try:
        explanation = runtime.explain(sweep.task, sweep.inputs(args.size, DTYPES[dtype]), {})
        print(json.dumps(explanation.to_dict(), indent=2) if args.json else explanation)
    finally:
        runtime.close()
    return 0


# ------------------------------------------------------------------------------ reset
def cmd_offload_reset(args: argparse.Namespace) -> int:
    from gpugate.offload.devices import CpuDevice
    from gpugate.offload.store import ModelStore

    store = ModelStore.of_machine(CpuDevice().label)
    path = store.path
    if not path.exists():
        print(f"nothing learned yet ({path} does not exist)")
        return 0
    aside = path.with_name(f"{path.name}.reset-{int(time.time())}")
    try:
        with store.locked():  # not between another process's read and write
            path.rename(aside)
    except OSError as exc:
        raise CliError(f"cannot reset {path}: {exc}") from None
    print(f"the model starts afresh; what it had learned is kept in {aside}")
    return 0
