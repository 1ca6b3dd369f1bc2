"""Apple Silicon GPUs through ``powermetrics`` (macOS only, needs root).

``parse_powermetrics`` reads the text of
``powermetrics --samplers gpu_power -i 1000 -n 1``. Two traps in the real output: the residency
line repeats percentages per frequency ("GPU HW active residency:   1.63% (338 MHz: 1.6% ...)"),
and "GPU Power" is printed twice per sample (in the CPU summary and in the GPU section).

Memory: the GPU shares system RAM and powermetrics says nothing about it, so the snapshot's
memory is the machine's, passed in by the caller: ``mem_total_bytes`` is physical RAM and
``mem_used_bytes`` the RAM not available to new allocations. A GPU job competes for exactly that.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from gpugate.gpu.base import MonitorUnavailable
from gpugate.gpu.nvidia_smi import CommandRunner, run_command
from gpugate.model import GpuSnapshot, MachineSnapshot

POWERMETRICS_ARGS = ("powermetrics", "--samplers", "gpu_power", "-i", "1000", "-n", "1")
MemoryProbe = Callable[[], tuple[int, int]]

_SAMPLE_RE = re.compile(r"^\*\*\* Sampled system activity \((?P<at>[^)]*)\)", re.MULTILINE)
_SECTION_RE = re.compile(r"^\*{4}\s*(?P<title>.*?)\s*\*{4}\s*$", re.MULTILINE)
# Only the first percentage after the colon: the ones in parentheses are per frequency.
# Older macOS versions print "GPU active residency" (no "HW").
_ACTIVE_RE = re.compile(r"^GPU (?:HW )?active residency:\s*(?P<pct>\d+(?:\.\d+)?)%", re.MULTILINE)
_IDLE_RE = re.compile(r"^GPU idle residency:\s*(?P<pct>\d+(?:\.\d+)?)%", re.MULTILINE)
_POWER_RE = re.compile(r"^GPU Power:\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>mW|W)\b", re.MULTILINE)
_MODEL_RE = re.compile(r"^Machine model:\s*(?P<model>\S.*?)\s*$", re.MULTILINE)
_SAMPLE_TIME_FORMAT = "%a %b %d %H:%M:%S %Y %z"


class PowermetricsMonitor:
    """The one GPU of an Apple Silicon Mac, sampled for one second per snapshot.

    Runs powermetrics directly as root, else through ``sudo -n`` (fails instead of asking for a
    password). ``memory_probe`` returns (total, used) system memory in bytes. The constructor
    takes one sample, so a missing tool or missing rights raise MonitorUnavailable here.
    """

    backend = "apple"

    def __init__(
        self,
        *,
        run: CommandRunner = run_command,
        memory_probe: MemoryProbe | None = None,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 10.0,
    ) -> None:
        self._run = run
        self._memory_probe = memory_probe or system_memory
        self._clock = clock
        self._timeout_s = timeout_s
        self._argv = POWERMETRICS_ARGS if os.geteuid() == 0 else ("sudo", "-n", *POWERMETRICS_ARGS)
        self.snapshot()

    def snapshot(self) -> MachineSnapshot:
        """The GPU now (takes about a second: powermetrics samples over -i 1000 ms)."""
        taken_at = self._clock()
        text = self._run(self._argv, self._timeout_s)
        total, used = self._memory_probe()
        try:
            return parse_powermetrics(
                text, mem_total_bytes=total, mem_used_bytes=used, taken_at=taken_at
            )
        except ValueError as err:
            raise MonitorUnavailable(f"cannot read powermetrics output: {err}") from err

    def job_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """Nothing to add to a job's environment ``base``: the GPUs are real."""
        return {}

    def close(self) -> None:
        """Nothing to release: every sample is its own process."""


def parse_powermetrics(
    text: str, *, mem_total_bytes: int, mem_used_bytes: int, taken_at: float | None = None
) -> MachineSnapshot:
    """One-GPU snapshot from powermetrics text (the last sample if there are several).

    ``taken_at`` (epoch seconds) defaults to the sample's own timestamp. Utilization is the
    "GPU HW active residency" percentage; power comes from the GPU section, in watts. Raises
    ValueError when the text has no GPU section or no time to stamp the snapshot with.
    """
    sample = _last_sample(text)
    gpu_text = _section(sample, "GPU usage")
    if gpu_text is None:
        raise ValueError("no '**** GPU usage ****' section (was --samplers gpu_power given?)")
    model = _match(_MODEL_RE, text, "model")
    gpu = GpuSnapshot(
        index=0,
        uuid="apple-gpu-0",
        name=f"Apple GPU ({model})" if model else "Apple GPU",
        mem_total_bytes=mem_total_bytes,
        mem_used_bytes=mem_used_bytes,
        util_pct=_active_pct(gpu_text),
        power_w=_power_w(gpu_text),
    )
    at = _sample_time(sample) if taken_at is None else taken_at
    note = "unified memory: memory figures are the machine's RAM"
    return MachineSnapshot(backend="apple", taken_at=at, gpus=(gpu,), note=note)


def system_memory() -> tuple[int, int]:
    """(total, used) bytes of system RAM; "used" is what is not available to new allocations."""
    import psutil  # a dependency of gpugate; imported here so the parser stays import-light

    memory = psutil.virtual_memory()
    return int(memory.total), int(memory.total - memory.available)


def _last_sample(text: str) -> str:
    starts = [match.start() for match in _SAMPLE_RE.finditer(text)]
    return text[starts[-1] :] if starts else text


def _section(sample: str, title: str) -> str | None:
    """The lines between the "**** <title> ****" header and the next header."""
    headers = list(_SECTION_RE.finditer(sample))
    for position, header in enumerate(headers):
        if header.group("title") == title:
            end = headers[position + 1].start() if position + 1 < len(headers) else len(sample)
            return sample[header.end() : end]
    return None


def _active_pct(gpu_text: str) -> float | None:
    active = _match(_ACTIVE_RE, gpu_text, "pct")
    if active is not None:
        return float(active)
    idle = _match(_IDLE_RE, gpu_text, "pct")
    return None if idle is None else max(0.0, 100.0 - float(idle))


def _power_w(gpu_text: str) -> float | None:
    match = _POWER_RE.search(gpu_text)
    if match is None:
        return None
    value = float(match.group("value"))
    return value / 1000 if match.group("unit") == "mW" else value


def _sample_time(sample: str) -> float:
    stamp = _match(_SAMPLE_RE, sample, "at")
    if stamp is None:
        raise ValueError("no '*** Sampled system activity (...)' line and no taken_at given")
    return datetime.strptime(stamp.strip(), _SAMPLE_TIME_FORMAT).timestamp()


def _match(pattern: re.Pattern[str], text: str, group: str) -> str | None:
    match = pattern.search(text)
    return None if match is None else match.group(group)
