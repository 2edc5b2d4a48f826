#!/bin/sh
# bench/train_vs_torch.sh [DTYPE] [THREADS] [BATCH] [SEQ] [STEPS] [REPS] — LoRA
# r=16 training tokens/s on the Qwen2.5-0.5B shape: bench/train_step.c
# (against build/libbasalt.a; LIB=... for another tree's library, and
# BASE_LIB=... to time a second library, e.g. before a change, alongside) and
# bench/train_torch.py (plain PyTorch f32, same threads) on the same random
# model directory (DTYPE BF16, F16 or F32, built and cached under
# bench/models/), interleaved REPS times so a shared machine's load hits both
# alike.  Prints one JSON line per run, then the load average.
set -e
here=$(dirname "$0")
PY=${BASALT_PYTHON:-/usr/bin/python3}
dtype=${1:-BF16}
threads=${2:-2}
batch=${3:-1}
seq=${4:-256}
steps=${5:-3}
reps=${6:-3}
lib=${LIB:-build/libbasalt.a}
m="$here/models/qwen2.5-0.5b-$dtype"
[ -f "$m/model.safetensors" ] || "$PY" "$here/make_random_model.py" "$m" --dtype "$dtype"
build() {
    cc -std=c17 -O2 -D_GNU_SOURCE -pthread -Isrc "$here/train_step.c" "$1" \
        $(pkg-config --libs libmicrohttpd jansson libpcre2-8 openblas libcurl sqlite3 yaml-0.1) \
        -lunistring -lm -pthread -o "$2"
}
build "$lib" build/bench_train_step
[ -z "$BASE_LIB" ] || build "$BASE_LIB" build/bench_train_step_base
i=0
while [ "$i" -lt "$reps" ]; do
    [ -z "$BASE_LIB" ] || { printf 'base: '; build/bench_train_step_base "$m" "$threads" "$batch" "$seq" "$steps"; }
    build/bench_train_step "$m" "$threads" "$batch" "$seq" "$steps"
    OMP_NUM_THREADS=$threads "$PY" "$here/train_torch.py" "$m" "$threads" "$batch" "$seq" "$steps"
    i=$((i + 1))
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
