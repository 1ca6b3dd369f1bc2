#!/usr/bin/env bash
# Run every gpugate benchmark, one after the other; figures print as they come and each
# script also writes bench/out/<name>.json. Usage: bench/run_all.sh [--quick]
#
# The peer (Debian's task-spooler, `tsp`) is installed with apt-get when missing and we are
# root; otherwise its figures are skipped with a message. --quick runs smaller sizes
# (a smoke test of the scripts, not figures to publish).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="$root/.venv/bin/python"
if [[ ! -x "$py" ]]; then
    echo "run_all: no virtualenv at $root/.venv (create it and pip install -e '.[dev]')" >&2
    exit 2
fi

if ! command -v tsp >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "run_all: installing task-spooler (the peer) with apt-get"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y task-spooler >/dev/null 2>&1; then
            apt-get update >/dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y task-spooler >/dev/null 2>&1 || true
        fi
    fi
    if ! command -v tsp >/dev/null 2>&1; then
        echo "run_all: tsp (task-spooler) is not installed and could not be installed:" \
            "the peer figures will be SKIPPED (as root: apt-get install -y task-spooler)" >&2
    fi
fi

if [[ "${1:-}" == "--quick" ]]; then
    export BENCH_OUT_DIR="$here/out/quick"  # keep the real figures in bench/out
    runs=(
        "cli_latency.py -n 10"
        "submit_to_start.py -n 10"
        "throughput.py -n 100"
        "queue_scale.py --jobs 10000 --batch 5000 --repeat 2 --idle-s 2 --drain-s 2"
        "idle_cpu.py --seconds 5"
        "suspend_latency.py --rounds 5"
        "preempt_latency.py --rounds 3"
        "identity_cost.py --rounds 50"
        "fair_share.py --hours 12"
        "offload.py --quick"
        "offload_threads.py --quick"
        offload_adapt.py
    )
else
    runs=(cli_latency.py submit_to_start.py throughput.py queue_scale.py idle_cpu.py
          suspend_latency.py preempt_latency.py identity_cost.py
          "fair_share.py --out $root/docs/img/fair_share.png" offload.py offload_threads.py
          offload_adapt.py)
fi

mkdir -p "${BENCH_OUT_DIR:-$here/out}"
failed=0
for run in "${runs[@]}"; do
    echo
    echo "################ bench/$run"
    started=$(date +%s)
    # shellcheck disable=SC2086  # the arguments are meant to split
    if ! "$py" "$here"/$run; then
        echo "run_all: bench/$run FAILED" >&2
        failed=1
    fi
    echo "(bench/$run took $(($(date +%s) - started)) s)"
done
exit "$failed"
