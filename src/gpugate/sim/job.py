"""What the simulator knows about a job: what it asks the scheduler, and what it really does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SimJob:
    """One job of a workload.

    ``declared_*`` is what the job tells the scheduler (``--mem``/``--util``);
    ``mem_bytes``/``util_pct`` is what it really allocates and uses on each of its GPUs,
    once ramped up. ``run_s`` is its run time alone on idle GPUs; co-located jobs slow it
    down (see ``interference``).
    """

    id: int
    submit_s: float  # seconds from the start of the simulation
    run_s: float  # solo run time, seconds
    gpus: int  # distinct GPUs; 0 = CPU-only
    mem_bytes: int  # real peak memory per GPU
    util_pct: float  # real utilization per GPU when alone, in [0, 100]
    declared_mem_bytes: int | None  # None: declares nothing (gpugate assumes a whole GPU)
    declared_util_pct: float = 0.0
    priority: int = 0  # higher runs first
    user: str = ""
    ramp_s: float = 20.0  # seconds from start until its memory is allocated
    name: str = ""
    command: str = ""  # what the daemon keys its history on; "" = one of a kind

    @property
    def submitted_command(self) -> str:
        """The command line the daemon would store: runs of one command share a history."""
        return self.command or self.name or f"job {self.id}"


@dataclass(frozen=True, slots=True)
class Workload:
    """Jobs sorted by submit time, plus where they came from (shown in reports)."""

    name: str
    jobs: Sequence[SimJob]
    description: str = ""
    priority_names: dict[int, str] = field(default_factory=dict)  # e.g. {2: "LS (high)"}
    # (command, run seconds) of runs that ended before the first job: the daemon's history
    history: tuple[tuple[str, float], ...] = ()
