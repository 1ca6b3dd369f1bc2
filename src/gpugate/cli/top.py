"""``gpugate top``: a live full-screen view of the GPUs and the queue, for SSH sessions.

Each GPU's utilization and memory as bars against its headroom line (the ``|`` in the
bar: admission keeps work under it), and the jobs: running and suspended ones where they
run, queued ones in the order they will be considered, each with why it waits. Refreshes
every ``--interval`` seconds; Ctrl-C leaves. ``--once`` prints one frame and exits.
"""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gpugate.api import schemas as api
from gpugate.client import Client
from gpugate.units import format_bytes

BAR_CELLS = 24
QUEUED_SHOWN = 20


def run_top(client: Client, interval_s: float, once: bool) -> int:
    console = Console()
    if once:
        console.print(frame(client))
        return 0
    try:
        with Live(frame(client), console=console, screen=True, auto_refresh=False) as live:
            while True:
                time.sleep(interval_s)
                live.update(frame(client), refresh=True)
    except KeyboardInterrupt:
        return 0


def frame(client: Client) -> Group:
    gpus = client.gpus()
    jobs = client.jobs(recent=5, queued=QUEUED_SHOWN)
    return Group(_header(gpus, jobs), _gpu_table(gpus), _job_table(jobs))


def _header(gpus: api.GpuList, jobs: api.JobList) -> Text:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(jobs.counts.items())) or "no jobs"
    note = f" ({gpus.note})" if gpus.note else ""
    stamp = time.strftime("%H:%M:%S", time.localtime(gpus.taken_at))
    return Text.assemble(
        ("gpugate top", "bold"), f"  {gpus.backend}{note}  {counts}  {stamp}  Ctrl-C quits"
    )


def _gpu_table(gpus: api.GpuList) -> Panel:
    table = Table(expand=True, box=None, pad_edge=False)
    for column in ("GPU", "name", "utilization (| = headroom)", "memory (| = headroom)", "jobs"):
        table.add_column(column, no_wrap=True)
    for gpu in gpus.gpus:
        util = gpu.util_smoothed_pct if gpu.util_smoothed_pct is not None else gpu.util_pct
        used = gpu.mem_used_bytes + gpu.reserved_mem_bytes
        mem_pct = 100 * used / gpu.mem_total_bytes if gpu.mem_total_bytes else 0.0
        others = [p for p in gpu.processes if p.job_id is None]
        who = ", ".join(f"#{j}" for j in gpu.jobs) or "-"
        if others:
            who += f" + {len(others)} other process{'es' if len(others) > 1 else ''}"
        table.add_row(
            str(gpu.index),
            gpu.name,
            bar(util or 0.0, gpu.util_headroom_pct, f"{util or 0:.0f}%"),
            bar(
                mem_pct,
                gpu.mem_headroom_pct,
                f"{format_bytes(used)} / {format_bytes(gpu.mem_total_bytes)}",
            ),
            who,
        )
    return Panel(table, title="GPUs", title_align="left")


def bar(pct: float, line_pct: float, label: str) -> Text:
    """``[#####....|...] label``: filled to ``pct``, the headroom line drawn at ``line_pct``;
    red past the line, yellow within 10 points of it."""
    filled = round(BAR_CELLS * min(max(pct, 0.0), 100.0) / 100)
    line = min(BAR_CELLS - 1, round(BAR_CELLS * line_pct / 100))
    style = "red" if pct > line_pct else "yellow" if pct > line_pct - 10 else "green"
    text = Text("[")
    for cell in range(BAR_CELLS):
        if cell == line:
            text.append("|", "bold")
        elif cell < filled:
            text.append("#", style)
        else:
            text.append(".", "dim")
    text.append(f"] {label}")
    return text


def _job_table(jobs: api.JobList) -> Panel:
    table = Table(expand=True, box=None, pad_edge=False)
    for column, ratio in (("id", None), ("state", None), ("prio", None), ("GPUs", None)):
        table.add_column(column, no_wrap=True, ratio=ratio)
    table.add_column("command", overflow="ellipsis", no_wrap=True, ratio=2)
    table.add_column("where / why it waits", overflow="ellipsis", no_wrap=True, ratio=3)
    order = {"running": 0, "starting": 0, "suspended": 1, "queued": 2, "held": 3}
    active = [j for j in jobs.jobs if j.state in order]
    ended = [j for j in jobs.jobs if j.state not in order]
    for job in sorted(active, key=lambda j: (order[j.state], j.id)) + ended[-5:]:
        where = (
            ",".join(f"GPU{i}" for i in job.gpu_indices)
            if job.state in ("running", "starting", "suspended")
            else job.reason
        )
        table.add_row(
            str(job.id),
            Text(job.state, _STATE_STYLE.get(job.state, "")),
            str(job.priority),
            str(job.gpus),
            job.command,
            where,
        )
    return Panel(table, title="jobs", title_align="left")


_STATE_STYLE = {
    "running": "green",
    "starting": "cyan",
    "suspended": "magenta",
    "queued": "yellow",
    "failed": "red",
    "lost": "red",
}
