"""The simulator report: time-binning by hand-computed values, a tiny comparison written to
a temporary directory (Markdown plus the PNGs it links), and a clear error without
matplotlib."""

from __future__ import annotations

import math
import re
import sys
from datetime import date
from pathlib import Path

import pytest

from gpugate.sim.experiment import Comparison, Experiment, run_experiment
from gpugate.sim.report import CHARTS, ReportError, bin_steps, bin_width_s, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMMAND = "gpugate sim report --jobs 60 --gpus 2 --policy fifo,gpugate --seeds 2"


# --- bin_steps ----------------------------------------------------------------------------
def test_a_step_inside_one_bin_is_weighted_by_how_long_it_holds() -> None:
    # 10 for 30 s, then 40 for 10 s: (300 + 400) / 40 s
    assert bin_steps([0.0, 30.0, 40.0], [10.0, 40.0, 99.0], 60.0) == ([0.0], [17.5])


def test_a_step_spanning_bins_is_split_at_the_bin_edges() -> None:
    # 2 on [0, 90), 6 on [90, 150): bin [0, 60) all 2; [60, 120) half 2 half 6; [120, 150) 6
    starts, means = bin_steps([0.0, 90.0, 150.0], [2.0, 6.0, 0.0], 60.0)

    assert starts == [0.0, 60.0, 120.0]
    assert means == [2.0, 4.0, 6.0]


def test_bins_are_aligned_to_multiples_of_the_width_and_cover_only_the_span() -> None:
    # starts at 100 s: bin [60, 120) sees 20 s of 5 then nothing before; [120, 180) 5 then 1
    starts, means = bin_steps([100.0, 150.0, 200.0], [5.0, 1.0, 7.0], 60.0)

    assert starts == [60.0, 120.0, 180.0]
    assert means == pytest.approx([5.0, (30 * 5 + 30 * 1) / 60, 1.0])


def test_samples_at_the_same_instant_keep_only_the_last_value() -> None:
    assert bin_steps([0.0, 10.0, 10.0, 20.0], [1.0, 100.0, 3.0, 0.0], 60.0) == ([0.0], [2.0])


def test_a_long_step_covers_every_bin_it_crosses() -> None:
    starts, means = bin_steps([0.0, 3600.0 * 5], [42.0, 0.0], 3600.0)

    assert starts == [0.0, 3600.0, 7200.0, 10800.0, 14400.0]
    assert means == [42.0] * 5


def test_fewer_than_two_samples_have_no_span() -> None:
    assert bin_steps([], [], 60.0) == ([], [])
    assert bin_steps([5.0], [1.0], 60.0) == ([], [])


def test_bin_steps_refuses_a_bad_width_or_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="positive"):
        bin_steps([0.0, 1.0], [1.0, 1.0], 0.0)
    with pytest.raises(ValueError, match="values"):
        bin_steps([0.0, 1.0], [1.0], 60.0)


def test_a_long_timeline_bins_exactly() -> None:
    # 200k samples of alternating 0/100 each 1 s long: every whole minute means 50
    n = 200_000
    starts, means = bin_steps(
        [float(i) for i in range(n)], [100.0 * (i % 2) for i in range(n)], 60.0
    )

    assert len(starts) == math.ceil((n - 1) / 60)
    assert all(m == pytest.approx(50.0) for m in means[:-1])


def test_bin_width_is_hourly_for_a_week_and_widens_for_longer_spans() -> None:
    assert bin_width_s(7 * 86400) == 3600
    assert bin_width_s(3600) == 60
    assert bin_width_s(30 * 86400) == 6 * 3600
    assert len(range(0, 10_000 * 86400, int(bin_width_s(10_000 * 86400)))) <= 200


# --- the report ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def outcome() -> Comparison:
    exp = Experiment(
        trace=None, synthetic_jobs=60, n_gpus=2, policies=("fifo", "gpugate"), seeds=(1, 2)
    )
    return run_experiment(exp)


def test_the_report_names_the_command_every_policy_and_a_row_for_each(
    outcome: Comparison, tmp_path: Path
) -> None:
    path = write_report(outcome, tmp_path / "out", COMMAND, baseline="fifo", today=date(2025, 1, 2))
    text = path.read_text(encoding="utf-8")

    assert path == tmp_path / "out" / "report.md"
    assert f"```sh\n{COMMAND}\n```" in text
    assert "2025-01-02" in text
    assert "offered load **0.90**" in text.lower()
    rows = table_rows(text, "| policy | avg JCT")
    assert [row.split("|")[1].strip() for row in rows] == ["`fifo`", "`gpugate`"]
    assert "relative to fifo" in text
    assert "| baseline |" in rows[0]
    assert re.search(r"avg JCT \d+(\.\d)?% (lower|higher)", rows[1])
    assert "p95 wait, high" in text  # the synthetic workload names its priority classes


def test_every_chart_the_report_links_is_a_png(outcome: Comparison, tmp_path: Path) -> None:
    text = write_report(outcome, tmp_path, COMMAND).read_text(encoding="utf-8")

    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert sorted(linked) == sorted(CHARTS)
    for name in linked:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 1000, name


def test_a_baseline_not_in_the_run_drops_the_comparison(
    outcome: Comparison, tmp_path: Path
) -> None:
    text = write_report(outcome, tmp_path, COMMAND).read_text(encoding="utf-8")

    assert "relative to" not in text  # fifo-backfill, the default, was not run


def test_without_matplotlib_the_report_says_how_to_install_it(
    outcome: Comparison, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in sys.modules if n.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: import fails

    with pytest.raises(ReportError, match=re.escape("pip install 'gpugate[bench]'")):
        write_report(outcome, tmp_path / "out", COMMAND)
    assert not (tmp_path / "out").exists()


def table_rows(text: str, header_start: str) -> list[str]:
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[at + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows
