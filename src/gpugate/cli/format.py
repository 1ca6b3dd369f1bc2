"""Text output of the CLI: tables that fit the terminal, times people read."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence

from gpugate.api import schemas as api
from gpugate.units import format_bytes


def ago(at: float | None, now: float | None = None) -> str:
    if at is None:
        return "-"
    return duration((now or time.time()) - at)


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """Left-aligned columns; the last column is cut to the terminal width."""
    width = shutil.get_terminal_size((160, 24)).columns
    cols = list(zip(headers, *rows, strict=False)) if rows else [(h,) for h in headers]
    sizes = [max(len(c) for c in col) for col in cols[:-1]]
    lines = []
    for row in [headers, *rows]:
        head = "  ".join(cell.ljust(size) for cell, size in zip(row[:-1], sizes, strict=False))
        line = f"{head}  {row[-1]}" if head else row[-1]
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    return "\n".join(lines)


def gpu_cell(job: api.JobView) -> str:
    if job.gpus == 0:
        return "cpu"
    if job.gpu_indices:
        return ",".join(map(str, job.gpu_indices))
    return f"{job.gpus}x"


def mem_cell(job: api.JobView) -> str:
    if job.gpus == 0:
        return "-"
    return "whole" if job.mem_bytes is None else format_bytes(job.mem_bytes)


def jobs_table(jobs: Sequence[api.JobView]) -> str:
    now = time.time()
    rows = [
        (
            str(j.id),
            j.state,
            str(j.priority),
            gpu_cell(j),
            mem_cell(j),
            _when(j, now),
            _short(j.name or j.command, 40),
            j.reason,
        )
        for j in jobs
    ]
    return table(rows, ("ID", "STATE", "PRI", "GPU", "MEM", "TIME", "COMMAND", "REASON"))


def _when(job: api.JobView, now: float) -> str:
    if job.ended_at is not None and job.started_at is not None:
        return duration(job.ended_at - job.started_at)
    if job.started_at is not None:
        return ago(job.started_at, now)
    return ago(job.submitted_at, now)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _expected_run(run_s: float | None) -> str:
    return "unknown (no successful run yet)" if run_s is None else f"{duration(run_s)} (history)"


def job_detail(detail: api.JobDetail) -> str:
    j = detail.job
    lines = [
        f"job {j.id}{f' ({j.name})' if j.name else ''}: {j.state}",
        f"  command:   {j.command}",
        f"  cwd:       {detail.cwd}",
        f"  priority:  {j.priority}",
        f"  gpus:      {j.gpus}"
        + (f" on {','.join(map(str, j.gpu_indices))}" if j.gpu_indices else ""),
        f"  expected:  mem {mem_cell(j)} per GPU, util {j.util_pct:.0f}% ({j.expectation}),"
        f" run {_expected_run(j.expected_run_s)}",
        f"  peak:      mem {format_bytes(j.peak_mem_bytes)}, util "
        + (f"{j.peak_util_pct:.0f}%" if j.peak_util_pct is not None else "-"),
        f"  exit code: {'-' if j.exit_code is None else j.exit_code}",
        f"  reason:    {j.reason}",
    ]
    if j.after:
        lines.append(f"  after:     {', '.join(map(str, j.after))}")
    if j.gpu_uuids:
        lines.append(f"  gpu uuids: {', '.join(j.gpu_uuids)}")
    lines.append(f"  logs:      {detail.stdout_path}")
    lines.append(f"             {detail.stderr_path}")
    lines.append("  history:")
    for t in detail.history:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.at))
        lines.append(f"    {stamp}  {(t.from_state or '-'):>9} -> {t.to_state:<9}  {t.reason}")
    return "\n".join(lines)


def gpus_table(gpus: api.GpuList) -> str:
    out = [f"backend: {gpus.backend}" + (f" ({gpus.note})" if gpus.note else "")]
    for g in gpus.gpus:
        util = "n/a" if g.util_pct is None else f"{g.util_pct:.0f}%"
        smooth = "n/a" if g.util_smoothed_pct is None else f"{g.util_smoothed_pct:.0f}%"
        out.append(
            f"GPU{g.index} {g.name} {g.uuid}\n"
            f"  util {util} (smoothed {smooth}, headroom {g.util_headroom_pct:.0f}%)"
            f"  mem {format_bytes(g.mem_used_bytes)} / {format_bytes(g.mem_total_bytes)}"
            f" (headroom {g.mem_headroom_pct:.0f}%, reserved {format_bytes(g.reserved_mem_bytes)})"
            + (f"  jobs {', '.join(map(str, g.jobs))}" if g.jobs else "")
        )
        for p in g.processes:
            owner = f"job {p.job_id}" if p.job_id is not None else "not gpugate"
            out.append(f"    pid {p.pid:<8} {format_bytes(p.mem_bytes):>10}  {owner:<12} {p.name}")
    return "\n".join(out)
