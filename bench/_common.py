"""Shared helpers for the benchmark scripts: a private daemon, a private tsp, stats, output.

Every benchmark boots its own daemon in a fresh temporary directory (never ``$GPUGATE_HOME``
and never a fixed path, so it cannot collide with anyone's daemon) and removes it, its jobs
and the directory on exit, Ctrl-C included.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
VENV_PY = VENV_BIN / "python"
GPUGATE = VENV_BIN / "gpugate"
# results go to bench/out (git-ignored); run_all.sh --quick points this elsewhere
OUT_DIR = Path(os.environ.get("BENCH_OUT_DIR") or ROOT / "bench" / "out")
PYCACHE = ROOT / "bench" / "out" / "pycache"


def python_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the Python processes we time: bytecode cached, as users have it.

    This sandbox sets PYTHONDONTWRITEBYTECODE=1, which would make every cold CLI start
    recompile any module without a fresh .pyc. We unset it and keep the cache under
    bench/out/pycache (PYTHONPYCACHEPREFIX), so nothing is written into src/.
    """
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def ensure_venv() -> None:
    """Re-run this script with the project's virtualenv if started with another Python."""
    try:
        import psutil  # noqa: F401

        import gpugate  # noqa: F401
    except ImportError:
        if VENV_PY.exists() and Path(sys.executable).resolve() != VENV_PY.resolve():
            os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])
        raise


ensure_venv()

import psutil as psutil  # noqa: E402  (re-exported for the scripts)

from gpugate.client import Client, DaemonNotRunning  # noqa: E402

_CLEANUPS: list[Callable[[], None]] = []


def _run_cleanups() -> None:
    while _CLEANUPS:
        with contextlib.suppress(Exception):
            _CLEANUPS.pop()()


def _on_signal(signum: int, frame: Any) -> None:
    _run_cleanups()
    sys.exit(128 + signum)


atexit.register(_run_cleanups)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


# --------------------------------------------------------------------------- progress
def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


class Progress:
    """A one-line counter on stderr for long loops."""

    def __init__(self, label: str, total: int, every: int | None = None) -> None:
        self.label, self.total = label, total
        self.every = every or max(1, total // 10)
        self.started = time.perf_counter()

    def step(self, done: int) -> None:
        if done % self.every and done != self.total:
            return
        took = time.perf_counter() - self.started
        text = f"  .. {self.label}: {done}/{self.total} ({took:.1f} s)"
        if sys.stderr.isatty():
            print("\r" + text, end="" if done < self.total else "\n", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ stats
def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p99_ms": percentile(ms, 99),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
    }


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return "-" if value is None else str(value)


# ---------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu_model = text.split(":", 1)[1].strip()
                break
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for text in Path("/etc/os-release").read_text().splitlines():
            if text.startswith("PRETTY_NAME="):
                os_name = text.split("=", 1)[1].strip('"') + f" (kernel {platform.release()})"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": os_name,
        "python": platform.python_version(),
        "gpugate": _gpugate_version(),
        "git": _git_describe(),
        "tsp": tsp_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "bytecode": "cached under bench/out/pycache (PYTHONPYCACHEPREFIX)",
    }


def _gpugate_version() -> str:
    from gpugate import __version__

    return __version__


def _git_describe() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+uncommitted src changes" if dirty else "")


def tsp_version() -> str | None:
    if shutil.which("tsp") is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "task-spooler"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        if out:
            return f"task-spooler {out}"
    return "task-spooler (version unknown)"


def print_machine(info: dict[str, Any]) -> None:
    print(
        f"machine: {info['cpu_model']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, "
        f"{info['os']}, Python {info['python']}\n"
        f"gpugate {info['gpugate']} ({info['git']}); peer: {info['tsp'] or 'tsp not installed'}\n"
        f"date: {info['date']}; load average at start: {info['loadavg_at_start']}"
    )


def write_json(name: str, results: dict[str, Any]) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"\nresults written to {shown}")
    return path


def header(title: str, info: dict[str, Any]) -> None:
    print(f"=== {title} ===")
    print_machine(info)
    print()


# ----------------------------------------------------------------------------- daemon
class BenchDaemon:
    """A gpugate daemon of our own: temp state dir, simulated GPUs, cleaned up on exit."""

    def __init__(self, gpus: str = "sim:2x24GiB", config: str = "", name: str = "gpugate") -> None:
        self.gpus = gpus
        self.home = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.workdir = self.home / "work"  # jobs' cwd and anything they write
        self.workdir.mkdir()
        if config:
            (self.home / "config.toml").write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = Client(self.socket, timeout_s=300)
        _CLEANUPS.append(self.close)

    @property
    def socket(self) -> Path:
        return self.home / "gpugate.sock"

    @property
    def env(self) -> dict[str, str]:
        env = python_env({k: v for k, v in os.environ.items() if not k.startswith("GPUGATE_")})
        env["GPUGATE_HOME"] = str(self.home)
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        return env

    def start(self) -> BenchDaemon:
        with open(self.home / "daemon.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(VENV_PY), "-m", "gpugate.cli.main", "serve", "--gpus", self.gpus],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120  # a restart with 100k queued jobs takes seconds
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {(self.home / 'daemon.log').read_text()}")
            try:
                self.client.health()
                break
            except (DaemonNotRunning, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError("the daemon did not answer within 120 s") from None
                time.sleep(0.02)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ps(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def cli(self, *args: str, check: bool = True, input: str | None = None) -> str:
        result = subprocess.run(
            [str(GPUGATE), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            input=input,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"gpugate {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def submit(self, command: str, **fields: Any) -> int:
        fields.setdefault("cwd", str(self.workdir))
        fields.setdefault("env", self.env)
        return self.client.submit_command(command, **fields).id

    def active_counts(self) -> dict[str, int]:
        # recent=0 and queued=0: the counts, with only the few running or held jobs
        return self.client.jobs(recent=0, queued=0).counts

    def wait_idle(self, timeout_s: float = 600, poll_s: float = 0.05) -> None:
        deadline = time.monotonic() + timeout_s
        while self.active_counts():
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs still active after {timeout_s} s")
            time.sleep(poll_s)

    def stop(self) -> None:
        """Stop the daemon only (SIGTERM); its running jobs live on, as in production."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cpu_seconds(self) -> float:
        """The daemon's own CPU time (user + system), not its jobs'."""
        times = self.ps().cpu_times()
        return float(times.user + times.system)

    def close(self) -> None:
        self.stop()
        kill_processes_mentioning(str(self.home))
        shutil.rmtree(self.home, ignore_errors=True)


def kill_processes_mentioning(text: str) -> None:
    """Kill the process groups of our leftover jobs: each shim names its job dir in argv."""
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info["pid"] != me and any(text in part for part in cmdline):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.info["pid"], signal.SIGKILL)


# -------------------------------------------------------------------------------- tsp
def have_tsp() -> bool:
    return shutil.which("tsp") is not None


def skip_peer_message() -> str:
    return (
        "tsp (Debian's task-spooler) is not installed: the peer figures are SKIPPED. "
        "Install it with `apt-get install -y task-spooler` (bench/run_all.sh does so as root)."
    )


class BenchTsp:
    """A private task-spooler server: its own TS_SOCKET and TMPDIR, killed on exit."""

    def __init__(self, slots: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-tsp-"))
        self.workdir = self.dir / "work"
        self.workdir.mkdir()
        self.env = dict(os.environ)
        self.env["TS_SOCKET"] = str(self.dir / "ts.sock")
        self.env["TMPDIR"] = str(self.dir)  # where tsp writes each job's output file
        self.env["TS_MAXFINISHED"] = "100000"
        self.env.pop("TS_SAVELIST", None)
        self.env.pop("TS_ONFINISH", None)
        _CLEANUPS.append(self.close)
        if slots is not None:
            self.run("-S", str(slots))

    def run(self, *args: str, check: bool = True, timeout_s: float = 120) -> str:
        result = subprocess.run(
            ["tsp", *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"tsp {' '.join(args)} failed ({result.returncode}): {result.stderr}"
            )
        return result.stdout

    def server_pid(self) -> int | None:
        """The server: the oldest ``tsp`` process on our socket (clients come and go)."""
        sock, found = self.env["TS_SOCKET"], []
        for proc in psutil.process_iter(["pid", "name", "create_time"]):
            if proc.info["name"] != "tsp":
                continue
            with contextlib.suppress(psutil.Error):
                if proc.environ().get("TS_SOCKET") == sock:
                    found.append((proc.info["create_time"], proc.info["pid"]))
        return min(found)[1] if found else None

    def states(self) -> list[str]:
        """The state column of ``tsp -l`` (queued, running, finished, ...)."""
        lines = self.run("-l").splitlines()[1:]
        return [line.split()[1] for line in lines if len(line.split()) > 1]

    def wait_idle(self, timeout_s: float = 600, poll_s: float = 0.05) -> None:
        deadline = time.monotonic() + timeout_s
        while any(s in ("queued", "running", "allocating") for s in self.states()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"tsp jobs still active after {timeout_s} s")
            time.sleep(poll_s)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            subprocess.run(["tsp", "-K"], env=self.env, capture_output=True, timeout=10)
        kill_processes_mentioning(str(self.dir))
        shutil.rmtree(self.dir, ignore_errors=True)


def read_stamp(path: Path, timeout_s: float = 60.0) -> float:
    """Poll (1 ms) until a job has written a time stamp (epoch seconds) there; return it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            text = path.read_text().strip()
            if text:
                return float(text)
        except (FileNotFoundError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no time stamp in {path} after {timeout_s} s")
        time.sleep(0.001)


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)
