#!/bin/sh
# bench/run.sh BIN — build random-weight models of Qwen2.5-0.5B shape (BF16 and
# F16, cached under bench/models/) and run `basalt bench --json` on each with
# 1 and all threads.  Prints one JSON line per run; docs/performance.md
# records the numbers.
set -e
BIN=${1:-build/basalt}
PY=${BASALT_PYTHON:-/usr/bin/python3}
dir=$(dirname "$0")/models
for dtype in BF16 F16; do
    m="$dir/qwen2.5-0.5b-$dtype"
    [ -f "$m/model.safetensors" ] || "$PY" "$(dirname "$0")/make_random_model.py" "$m" --dtype "$dtype"
    for t in 1 $(nproc); do
        "$BIN" bench "$m" --prompt-tokens 128 --gen-tokens 64 --threads "$t" --reps 3 --json
    done
done
