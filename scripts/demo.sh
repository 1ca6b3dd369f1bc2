#!/usr/bin/env bash
# gpugate in one minute: a daemon on this machine's GPUs (simulated ones when there is
# none, said loudly), a handful of jobs, and what the scheduler decided and why.
set -euo pipefail
export GPUGATE_HOME="${GPUGATE_HOME:-$PWD/.demo}"
rm -rf "$GPUGATE_HOME"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
stop() { [ -f "$GPUGATE_HOME/gpugate.pid" ] && kill "$(cat "$GPUGATE_HOME/gpugate.pid")" 2>/dev/null || true; }
trap stop EXIT

step gpugate serve --detach
if ! gpugate gpus --json | grep -q '"backend": "sim"'; then
  echo "(real GPUs found: the demo jobs only sleep, they allocate nothing)"
fi
step gpugate gpus

# on simulated GPUs a job declares what it uses through `gpugate sim use`
use() { echo "[ -n \"\${GPUGATE_SIM_DIR:-}\" ] && gpugate sim use --mem $1 --util $2; sleep $3"; }

step gpugate submit --name train-a --mem 14GiB --util 40 -- "$(use 14GiB 40 4)"
step gpugate submit --name train-b --mem 14GiB --util 40 -- "$(use 14GiB 40 3)"
step gpugate submit --name train-c --mem 14GiB --util 40 -- "$(use 14GiB 40 3)"
step gpugate submit --name urgent-eval -p 5 --mem 6GiB --util 30 -- "$(use 6GiB 30 2)"
step gpugate submit --name preprocess --gpus 0 -- "echo preprocessing on the CPU; sleep 1"
step gpugate submit --name unknown-size -- "sleep 1"
for lr in 1e-3 3e-4 1e-4; do echo "$(use 4GiB 20 1) # lr=$lr"; done > "$GPUGATE_HOME/sweep.txt"
step gpugate submit --mem 4GiB --util 20 --file "$GPUGATE_HOME/sweep.txt"
step gpugate submit --name after-sweep --gpus 0 --after 9 -- "echo the sweep is done"
sleep 1
step gpugate ls
step gpugate gpus
echo; echo "waiting for every job to finish..."
gpugate wait $(seq 1 10) --quiet || true
step gpugate ls
step gpugate show 2
step gpugate logs 10

echo; echo "The offload runtime: each compute call runs where it is expected to finish first."
export GPUGATE_OFFLOAD_MODEL="$GPUGATE_HOME/offload-model.json"
step gpugate offload calibrate --quick --kinds sobel,nbody
step gpugate offload explain sobel 240
echo; echo "Done. State, logs and the SQLite database are in $GPUGATE_HOME."
