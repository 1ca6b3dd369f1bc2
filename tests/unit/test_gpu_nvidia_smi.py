"""nvidia-smi parsers on real outputs (tests/data/gpu-output, see SOURCES.txt) and the monitor."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from gpugate.gpu.base import MonitorUnavailable
from gpugate.gpu.nvidia_smi import (
    NvidiaSmiMonitor,
    attach_processes,
    merge_by_pid,
    parse_query_apps_csv,
    parse_query_gpu_csv,
    parse_xml,
    run_command,
)
from gpugate.model import GpuProcess, GpuSnapshot
from gpugate.units import MiB

DATA = Path(__file__).resolve().parents[1] / "data" / "gpu-output"
H100_MIG = "nvidia-smi-sections/linux-x86_64__nvidia-h100-mig__590.48.01"
WINDOWS_2080S = "nvidia-smi-sections/windows-x86_64__nvidia-geforce-rtx-2080-super__591.86"
MASKED_UUID = "GPU-00000000-0000-0000-0000-000000000000"


def read(name: str) -> str:
    return (DATA / name).read_text()


def mib(*values: int) -> list[int]:
    return [v * MiB for v in values]


# ---------------------------------------------------------------------------------------
# --query-gpu
# ---------------------------------------------------------------------------------------
def test_query_gpu_csv_busy_8x_a100_with_header_and_units() -> None:
    gpus = parse_query_gpu_csv(
        read("nvidia-smi-query-gpu__8xA100-80GB-busy__findstring-61142295469.csv")
    )

    assert [g.index for g in gpus] == list(range(8))
    assert {g.name for g in gpus} == {"NVIDIA A100-SXM4-80GB"}
    assert [g.mem_total_bytes for g in gpus] == mib(*[81920] * 8)
    assert [g.mem_used_bytes for g in gpus] == mib(66147, 77105, 50803, 57421, 76651, 0, 6313, 6247)
    assert [g.util_pct for g in gpus] == [99, 0, 87, 99, 0, 0, 39, 40]
    assert all(g.uuid == "" and g.temperature_c is None for g in gpus)  # not queried there


def test_query_gpu_csv_heterogeneous_pair() -> None:
    rtx4090, gtx1080ti = parse_query_gpu_csv(
        read("nvidia-smi-query-gpu__RTX4090+GTX1080Ti__findstring-71176061642.csv")
    )

    assert (rtx4090.name, rtx4090.mem_used_bytes, rtx4090.mem_total_bytes) == (
        "NVIDIA GeForce RTX 4090",
        22995 * MiB,
        24564 * MiB,
    )
    assert rtx4090.util_pct == 93
    assert (gtx1080ti.index, gtx1080ti.mem_used_bytes, gtx1080ti.mem_total_bytes) == (
        1,
        8 * MiB,
        11264 * MiB,
    )
    assert gtx1080ti.util_pct == 0


def test_query_gpu_csv_finds_columns_by_name_among_two_hundred() -> None:
    [gpu] = parse_query_gpu_csv(read(f"{H100_MIG}/query-gpu_load.csv"))

    assert (gpu.index, gpu.uuid, gpu.name) == (0, MASKED_UUID, "NVIDIA H100 80GB HBM3")
    assert (gpu.mem_total_bytes, gpu.mem_used_bytes) == (81559 * MiB, 11125 * MiB)
    assert gpu.util_pct is None  # "[N/A]": no device utilization in MIG mode
    assert gpu.temperature_c == 53
    assert gpu.power_w == pytest.approx(433.78)


def test_query_gpu_csv_windows_capture() -> None:
    [gpu] = parse_query_gpu_csv(read(f"{WINDOWS_2080S}/query-gpu_load.csv"))

    assert gpu.name == "NVIDIA GeForce RTX 2080 SUPER"
    assert (gpu.mem_total_bytes, gpu.mem_used_bytes) == (8192 * MiB, 1296 * MiB)
    assert (gpu.util_pct, gpu.temperature_c, gpu.power_w) == (7, 45, pytest.approx(97.43))


def test_query_gpu_csv_without_header_or_units_reads_markers_as_none() -> None:
    text = (
        "0, GPU-aaaa, NVIDIA RTX A5000, 24564, 22437, 0, 13, 6.52\n"
        "1, GPU-bbbb, NVIDIA RTX A5000, 24564, 17253, [Not Supported], N/A, [N/A]\n"
    )
    first, second = parse_query_gpu_csv(text)

    assert (first.uuid, first.mem_used_bytes, first.util_pct, first.power_w) == (
        "GPU-aaaa",
        22437 * MiB,
        0,
        6.52,
    )
    assert (second.index, second.mem_total_bytes) == (1, 24564 * MiB)
    assert (second.util_pct, second.temperature_c, second.power_w) == (None, None, None)


def test_query_gpu_csv_rejects_missing_memory_and_ragged_rows() -> None:
    with pytest.raises(ValueError, match=r"memory\.total"):
        parse_query_gpu_csv("0, GPU-a, X, [N/A], 10, 0, 30, 50\n")
    with pytest.raises(ValueError, match="columns"):
        parse_query_gpu_csv("0, GPU-a, X, 100\n")


# ---------------------------------------------------------------------------------------
# --query-compute-apps
# ---------------------------------------------------------------------------------------
def test_query_apps_csv_idle_has_no_process() -> None:
    assert parse_query_apps_csv(read(f"{H100_MIG}/query-compute-apps_idle.csv")) == {}


def test_query_apps_csv_under_load() -> None:
    processes = parse_query_apps_csv(read(f"{H100_MIG}/query-compute-apps_load.csv"))

    assert list(processes) == [MASKED_UUID]
    assert [(p.pid, p.mem_bytes, p.name) for p in processes[MASKED_UUID]] == [
        (21180, 2296 * MiB, "/root/tools/memhog"),
        (21181, 1272 * MiB, "/root/tools/memhog"),
        (21198, 7484 * MiB, "./gpu_burn"),
    ]


def test_query_apps_csv_windows_memory_is_unknown() -> None:
    [processes] = parse_query_apps_csv(
        read(f"{WINDOWS_2080S}/query-compute-apps_load.csv")
    ).values()

    assert len(processes) == 12
    assert all(p.mem_bytes is None for p in processes)  # "[N/A]" under WDDM
    assert processes[4] == GpuProcess(20372, None, name=r"C:\Program Files\NZXT CAM\NZXT CAM.exe")
    assert [p.pid for p in processes[-2:]] == [25704, 26660]


def test_query_apps_csv_keeps_commas_inside_a_process_name() -> None:
    text = "GPU-aaaa, 4242, python train.py --tags=a,b, 1024\nGPU-bbbb, 4242, python, 2048\n"

    processes = parse_query_apps_csv(text)

    assert processes["GPU-aaaa"] == (
        GpuProcess(4242, 1024 * MiB, name="python train.py --tags=a,b"),
    )
    assert processes["GPU-bbbb"] == (GpuProcess(4242, 2048 * MiB, name="python"),)


# ---------------------------------------------------------------------------------------
# nvidia-smi -q -x
# ---------------------------------------------------------------------------------------
def test_xml_v13_dual_a5000_one_pid_on_both_gpus() -> None:
    first, second = parse_xml(read("nvidia-smi-q-x__telegraf__dual_a5000-v13.xml"))

    # the file order is NVML's, although <minor_number> says 1 then 0
    assert (first.index, first.uuid) == (0, "GPU-12345678-aaaa-bbbb-cccc-0123456789ab")
    assert (second.index, second.uuid) == (1, "GPU-12345678-aaaa-bbbb-cccc-0123456789cd")
    assert [g.mem_total_bytes for g in (first, second)] == mib(24564, 24564)
    assert [g.mem_used_bytes for g in (first, second)] == mib(22437, 17253)
    assert [g.temperature_c for g in (first, second)] == [13, 15]
    assert [g.power_w for g in (first, second)] == [6.52, 13.59]  # <instant_power_draw>
    llama = "/root/src/llama.cpp/build/bin/llama-server"
    assert first.processes == (GpuProcess(100477, 22430 * MiB, name=llama),)
    assert second.processes == (GpuProcess(100477, 17246 * MiB, name=llama),)


def test_xml_v13_dual_2080_without_processes() -> None:
    gpus = parse_xml(read("nvidia-smi-q-x__telegraf__dual_2080-v13.xml"))

    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 2080"] * 2
    assert [(g.mem_total_bytes, g.mem_used_bytes) for g in gpus] == [(8192 * MiB, 1 * MiB)] * 2
    assert [g.processes for g in gpus] == [(), ()]
    assert [g.power_w for g in gpus] == [1.0, 1.62]  # average is N/A, instant is not


def test_xml_v11_tesla_t4_graphics_and_compute_processes() -> None:
    [gpu] = parse_xml(read("nvidia-smi-q-x__telegraf__tesla-t4.xml"))

    assert (gpu.uuid, gpu.name) == ("GPU-d37e67a5-91dd-3774-a5cb-99096249601a", "Tesla T4")
    assert (gpu.mem_total_bytes, gpu.mem_used_bytes) == (15360 * MiB, 1032 * MiB)
    assert (gpu.util_pct, gpu.temperature_c, gpu.power_w) == (0, 40, 26.78)  # <power_readings>
    assert gpu.processes == (
        GpuProcess(675, 22 * MiB, name="/usr/lib/xorg/Xorg"),
        GpuProcess(5762, 1005 * MiB, name="python"),
    )


def test_xml_v11_a10g() -> None:
    [gpu] = parse_xml(read("nvidia-smi-q-x__telegraf__a10g.xml"))

    assert (gpu.mem_total_bytes, gpu.mem_used_bytes, gpu.power_w) == (23028 * MiB, 22 * MiB, 25.58)
    assert [(p.pid, p.mem_bytes) for p in gpu.processes] == [(725, 22 * MiB)]


def test_xml_v12_a100_in_mig_mode_reports_the_physical_gpu() -> None:
    [gpu] = parse_xml(read("nvidia-smi-q-x__telegraf__a100-sxm4-v12.xml"))

    assert gpu.name == "NVIDIA A100-SXM4-80GB"
    # the GPU's own 50 MiB, not a MIG instance's 12 MiB of 19968 MiB
    assert (gpu.mem_total_bytes, gpu.mem_used_bytes) == (81920 * MiB, 50 * MiB)
    assert gpu.util_pct is None  # <gpu_util>N/A</gpu_util>
    assert (gpu.temperature_c, gpu.power_w) == (27, 67.03)  # <gpu_power_readings><power_draw>
    assert gpu.processes == ()  # <processes />


def test_xml_v12_rtx3080_five_processes_with_commas_in_names() -> None:
    [gpu] = parse_xml(read("nvidia-smi-q-x__telegraf__rtx-3080-v12.xml"))

    assert [p.pid for p in gpu.processes] == [835, 1481, 2214, 4044, 42416]
    assert [p.mem_bytes for p in gpu.processes] == mib(550, 18, 79, 541, 159)
    assert gpu.processes[2].name.startswith("/opt/microsoft/msedge/msedge --type=gpu-process")
    assert gpu.mem_used_bytes == 1128 * MiB


def test_xml_without_doctype_gtx_1660_ti() -> None:
    [gpu] = parse_xml(read("nvidia-smi-q-x__telegraf__gtx-1660-ti.xml"))

    assert (gpu.name, gpu.mem_total_bytes, gpu.mem_used_bytes) == ("Graphics Device", 5912 * MiB, 0)
    assert (gpu.util_pct, gpu.temperature_c, gpu.power_w, gpu.processes) == (0, 40, 8.93, ())


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def test_merge_by_pid_sums_memory_of_repeated_pids() -> None:
    merged = merge_by_pid(
        [GpuProcess(7, 100, name="a"), GpuProcess(8, None), GpuProcess(7, 50), GpuProcess(8, None)]
    )

    assert merged == (GpuProcess(7, 150, name="a"), GpuProcess(8, None))


def test_attach_processes_matches_by_uuid() -> None:
    gpus = [GpuSnapshot(0, "GPU-a", "x", 10, 1, 0.0), GpuSnapshot(1, "GPU-b", "x", 10, 1, 0.0)]

    first, second = attach_processes(gpus, {"GPU-b": (GpuProcess(9, 1),)})

    assert (first.processes, second.processes) == ((), (GpuProcess(9, 1),))


# ---------------------------------------------------------------------------------------
# The monitor, with a fake runner answering like nvidia-smi on the H100 MIG capture
# ---------------------------------------------------------------------------------------
class FakeNvidiaSmi:
    """Answers the two queries in the monitor's format (noheader, nounits)."""

    gpus = f"0, {MASKED_UUID}, NVIDIA H100 80GB HBM3, 81559, 11125, [N/A], 53, 433.78\n"
    apps = "".join(
        f"{MASKED_UUID}, {pid}, {name}, {mib}\n"
        for pid, name, mib in [(21180, "/root/tools/memhog", 2296), (21198, "./gpu_burn", 7484)]
    )

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], float]] = []

    def __call__(self, argv: Sequence[str], timeout_s: float) -> str:
        self.calls.append((tuple(argv), timeout_s))
        return self.apps if argv[1].startswith("--query-compute-apps") else self.gpus


def test_monitor_snapshot_joins_gpus_and_processes() -> None:
    runner = FakeNvidiaSmi()
    monitor = NvidiaSmiMonitor(run=runner, timeout_s=3.0, clock=lambda: 42.0)

    snap = monitor.snapshot()

    assert (snap.backend, snap.taken_at) == ("nvidia-smi", 42.0)
    [gpu] = snap.gpus
    assert (gpu.mem_used_bytes, gpu.util_pct, gpu.temperature_c) == (11125 * MiB, None, 53)
    assert [(p.pid, p.mem_bytes) for p in gpu.processes] == [
        (21180, 2296 * MiB),
        (21198, 7484 * MiB),
    ]
    assert runner.calls[0] == (
        (
            "nvidia-smi",
            "--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu,"
            "temperature.gpu,power.draw",
            "--format=csv,noheader,nounits",
        ),
        3.0,
    )
    assert runner.calls[-1][0][1] == (
        "--query-compute-apps=gpu_uuid,pid,process_name,used_gpu_memory"
    )
    assert monitor.job_env({"PATH": "/usr/bin"}) == {}


def test_monitor_is_unavailable_without_nvidia_smi() -> None:
    with pytest.raises(MonitorUnavailable, match="not on PATH"):
        NvidiaSmiMonitor(executable="nvidia-smi-that-does-not-exist-gpugate")


def test_monitor_is_unavailable_without_gpus() -> None:
    with pytest.raises(MonitorUnavailable, match="no GPU"):
        NvidiaSmiMonitor(run=lambda argv, timeout_s: "")


def test_monitor_turns_unreadable_output_into_unavailable() -> None:
    runner = FakeNvidiaSmi()
    monitor = NvidiaSmiMonitor(run=runner)
    runner.gpus = "No devices were found\n"

    with pytest.raises(MonitorUnavailable, match="cannot read nvidia-smi output"):
        monitor.snapshot()


def test_run_command_returns_stdout() -> None:
    assert run_command([sys.executable, "-c", "print('ok')"], 10.0) == "ok\n"


def test_run_command_failure_names_the_reason() -> None:
    argv = [sys.executable, "-c", "import sys; sys.exit('Failed to initialize NVML')"]

    with pytest.raises(MonitorUnavailable, match="exited with 1: Failed to initialize NVML"):
        run_command(argv, 10.0)


def test_run_command_timeout_is_unavailable() -> None:
    with pytest.raises(MonitorUnavailable, match="timed out"):
        run_command([sys.executable, "-c", "import time; time.sleep(10)"], 0.2)
