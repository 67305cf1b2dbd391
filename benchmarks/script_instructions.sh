#!/bin/sh
# Redis instructions per job of the worker's start and complete scripts (callgrind).
#
#   sh benchmarks/script_instructions.sh [N]      (from the repository root; N: 1000)
#
# Starts a private redis-server on 127.0.0.1:26393 under valgrind's callgrind,
# runs benchmarks/script_cost.py against it (batches of 100) with this tree's
# aioq, and prints the instructions Redis executed per job for the starts and
# for the completions: deterministic (±2 %), where CPU seconds on a shared
# machine swing by ±20 %. Needs valgrind and redis-server on PATH.
set -e
N=${1:-1000}
PORT=26393
PYTHON=${PYTHON:-python}
D=$(mktemp -d)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$D/out" \
  redis-server --port $PORT --bind 127.0.0.1 --save '' --appendonly no --dir "$D" > "$D/log" 2>&1 &
VG=$!
while ! redis-cli -p $PORT ping > /dev/null 2>&1; do sleep 0.5; done
trap 'redis-cli -p $PORT shutdown nosave > /dev/null 2>&1 || true' EXIT
AIOQ_CALLGRIND_PID=$VG PYTHONPATH=$PWD $PYTHON benchmarks/script_cost.py "redis://127.0.0.1:$PORT/0" "$N" 100 1 > /dev/null
redis-cli -p $PORT shutdown nosave > /dev/null 2>&1 || true
wait $VG || true
$PYTHON - "$D" "$N" <<'PY'
import glob, re, sys
d, n = sys.argv[1], int(sys.argv[2])
files = sorted(glob.glob(d + "/out.*"), key=lambda f: int(f.rsplit(".", 1)[1]))
totals = [int(re.search(r"^totals: (\d+)", open(f).read(), re.M).group(1)) for f in files]
start, complete = sum(totals[0::2]), sum(totals[1::2])
print(f"start {start / n:,.0f} instructions/job, complete {complete / n:,.0f} instructions/job")
PY
rm -rf "$D"
