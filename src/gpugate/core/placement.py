"""Where a job goes: N distinct GPUs that fit, best fit first; or why there are not enough."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gpugate.core.admission import FitCheck, Refusal
from gpugate.core.load import GpuLoad
from gpugate.core.policy import Policy
from gpugate.model import Job

MAX_REASONS_SHOWN = 3
# what a job's placement and reason depend on: GPUs, memory, util, exclusive, run time
Shape = tuple[int, int | None, float, bool, float | None]


def place(job: Job, loads: Iterable[GpuLoad], fits: FitCheck, policy: Policy) -> list[GpuLoad]:
    """Choose ``job.spec.gpus`` GPUs; none (an empty list) when not enough fit.

    Best fit: the GPUs left with the least memory headroom after the job, so big gaps stay
    free for big jobs; ties go to the less utilized, then the lower index.
    """
    fitting = [load for load in loads if _refusal(load, job, fits, policy) is None]
    wanted = job.spec.gpus
    if len(fitting) < wanted:
        return []
    fitting.sort(key=lambda load: _fit_key(load, job))
    return fitting[:wanted]


def refusal_reason(job: Job, loads: Iterable[GpuLoad], fits: FitCheck, policy: Policy) -> str:
    """Why ``place`` finds too few GPUs for the job on these loads: the first few GPUs'
    refusals, and how many more refused."""
    fitting = 0
    refusals: list[Refusal] = []
    for load in loads:
        reason = _refusal(load, job, fits, policy)
        if reason is None:
            fitting += 1
        else:
            refusals.append(reason)
    return _not_enough(job.spec.gpus, fitting, refusals)


def shape_of(job: Job) -> Shape:
    """Jobs of one shape get the same answer on the same loads, and the same reason."""
    expected = job.expected
    return job.spec.gpus, expected.mem_bytes, expected.util_pct, job.spec.exclusive, expected.run_s


class RefusalWriter:
    """Writes, when asked, why jobs refused at one moment of a pass were refused.

    It holds the pass's live loads, and copies them only when the pass is about to change
    them (``keep_as_they_are``): most moments end with the pass and cost no copy. Jobs of
    one shape share one sentence, as they shared one answer.
    """

    __slots__ = ("_fits", "_loads", "_policy", "_written")

    def __init__(self, loads: Sequence[GpuLoad], fits: FitCheck, policy: Policy) -> None:
        self._loads = loads
        self._fits = fits
        self._policy = policy
        self._written: dict[Shape, str] = {}

    def keep_as_they_are(self) -> None:
        """The pass is about to change the loads: keep copies of them as they are now."""
        self._loads = [load.snapshot() for load in self._loads]

    def write(self, job: Job) -> str:
        shape = shape_of(job)
        text = self._written.get(shape)
        if text is None:
            text = self._written[shape] = refusal_reason(job, self._loads, self._fits, self._policy)
        return text


def _refusal(load: GpuLoad, job: Job, fits: FitCheck, policy: Policy) -> Refusal | None:
    return _drained(load) or _held(load, job) or fits(load, job, policy)


def _held(load: GpuLoad, job: Job) -> Refusal | None:
    """A GPU held for the blocked head takes only jobs expected to end before the head is
    expected to start there (EASY backfill): backfill never delays the head."""
    if (head := load.held_for) is None:
        return None
    run_s, slack_s = job.expected.run_s, load.hold_slack_s
    if run_s is not None and run_s <= slack_s:
        return None
    length = "an unknown time" if run_s is None else f"{run_s / 60:.0f} min"
    return lambda: (
        f"{load.label} held for job {head}, expected to start there in {slack_s / 60:.0f} min;"
        f" this job is expected to run {length}"
    )


def _drained(load: GpuLoad) -> Refusal | None:
    """The backfill bound holds under every admission rule: a drained GPU takes no one."""
    if (head := load.drained_for) is None:
        return None
    return lambda: f"{load.label} kept free for job {head} (waited past backfill bound)"


def _fit_key(load: GpuLoad, job: Job) -> tuple[int, float, int]:
    need = job.expected.mem_bytes or 0
    left = load.mem_cap_bytes - load.mem_bytes - need
    if job.expected.whole_gpu or job.spec.exclusive:
        left = load.mem_bytes  # it takes the whole GPU: prefer the emptiest
    return left, load.util_pct, load.view.index


def _not_enough(wanted: int, fitting: int, refusals: list[Refusal]) -> str:
    shown = "; ".join(write() for write in refusals[:MAX_REASONS_SHOWN])
    if len(refusals) > MAX_REASONS_SHOWN:
        shown += f"; and {len(refusals) - MAX_REASONS_SHOWN} more"
    if wanted == 1:
        return shown or "no GPU"
    return f"needs {wanted} GPUs, {fitting} fit: {shown}"
