#!/bin/bash
# One lent GPU machine for a fixed time: as many of the named grids' runs as fit, then the speed bench.
#
#   scripts/gpu_lease.sh SECONDS CHAPTER[@PROFILE] ...
#
# Runs every CHAPTER's grid at once (one `miue grid --cluster local` per chapter, JOBS processes each, all on
# the one GPU), stops them SECONDS - 150 s after the start (BENCH=0: SECONDS - 20 s), packs the records
# written meanwhile into $OUT/records.tgz (unpack it in the repository's root, then commit data/runs), then
# runs `miue.bench` on the idle GPU, its JSON and the logs beside the records. A run stopped mid-way leaves no record: it is
# computed again by the next grid call, on whatever machine. Written for the workplace's lent machine (no
# .git there: MIUE_GIT_COMMIT names the commit in the records' provenance; submitit travels as a wheel).
set -u
export PYTHONUNBUFFERED=1
BUDGET=${1:?seconds}; shift
JOBS=${JOBS:-4}
OUT=${OUT:-/tmp/gpu_lease_out}; mkdir -p "$OUT"
T0=$(date +%s)
touch /tmp/lease.stamp
PY=${PY:-python3}

pack() {
    find "${MIUE_RUNS:-data/runs}" -name '*.json' -newer /tmp/lease.stamp > /tmp/lease.new
    tar czf "$OUT/records.tgz" -T /tmp/lease.new
    echo "packed $(wc -l < /tmp/lease.new) records"
}
(while sleep 60; do pack > /dev/null 2>&1; done) &  # a lease cut short still returns what finished
PACKER=$!
trap 'kill $PACKER 2>/dev/null; wait $PACKER 2>/dev/null; pack' EXIT

if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 3
fi
$PY - <<'EOF' || exit 3
import torch, submitit, miue.grid, miue.data
import os
assert torch.cuda.is_available() or os.environ.get("LEASE_TEST"), "no GPU visible"
print("torch", torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(), "miue", miue.__version__)
miue.data.load("fashion-mnist", "test")
EOF

BENCH=${BENCH:-1}  # BENCH=0: no bench, the grids run to SECONDS - 20 s
STOP=$((T0 + BUDGET - (BENCH == 1 ? 150 : 20)))
mkdir -p /tmp/lease_logs
pids=()
for c in "$@"; do
    name=${c//@/_}
    ( timeout $((STOP - $(date +%s))) $PY -m miue.grid "$c" --cluster local --jobs "$JOBS" --threads 1 \
          --gpus 1 --folder /tmp/lease_jobs --no-progress > "/tmp/lease_logs/$name.log" 2>&1
      echo "exit $?" >> "/tmp/lease_logs/$name.log" ) &
    pids+=($!)
done
wait "${pids[@]}"
pkill -f /tmp/lease_jobs 2>/dev/null; sleep 2  # this lease's local jobs (timeout ended their grids)
kill $PACKER 2>/dev/null; wait $PACKER 2>/dev/null
pack
grep -h -v "it/s\|s/it" /tmp/lease_logs/*.log | tail -n 300 > "$OUT/grids.log"
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv > "$OUT/nvidia-smi.txt" 2>&1
[ "$BENCH" = 1 ] || exit 0

bench() { timeout 40 $PY -m miue.bench --device cuda --model resnet18 "$@"; }
{
    echo "["
    bench --width 1 --shape 3,32,32 --batch 512 --miue-batch 512 --skip mi; echo ","
    bench --width 1 --shape 1,28,28 --batch 512 --miue-batch 512 --skip mi; echo ","
    bench --width 0.125 --shape 1,28,28 --batch 128 --miue-batch 512 --skip mi; echo ","
    bench --width 1 --shape 3,32,32 --batch 512 --compile --skip miue,mi
    echo "]"
} > "$OUT/bench.json" 2> "$OUT/bench.err"
echo "lease used $(( $(date +%s) - T0 )) s"
