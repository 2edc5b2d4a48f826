#!/bin/sh
# bench/roofline.sh [BIN] — one run of bench/roofline.c: this machine's read
# bandwidth and peak FLOP/s, then `basalt bench --json` on every random model
# bench/run.sh builds (Qwen2.5-0.5B shape, BF16 and F16; plus the Llama-3.2-1B
# shape with ROOFLINE_LLAMA=1) and the fractions of those limits each reaches.
# Threads: ROOFLINE_THREADS (default every CPU).  Needs build/libbasalt.a (make).
set -e
here=$(dirname "$0")
BIN=${1:-build/basalt}
PY=${BASALT_PYTHON:-/usr/bin/python3}
shapes="qwen2.5-0.5b"
[ "${ROOFLINE_LLAMA:-0}" = 1 ] && shapes="$shapes llama3.2-1b"
models=""
for shape in $shapes; do
    for dtype in BF16 F16; do
        m="$here/models/$shape-$dtype"
        [ -f "$m/model.safetensors" ] || "$PY" "$here/make_random_model.py" "$m" --dtype "$dtype" --shape "$shape"
        models="$models $m"
    done
done
PKGS="libmicrohttpd jansson libpcre2-8 openblas libcurl sqlite3 yaml-0.1"
cc -std=c17 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -Isrc "$here/roofline.c" build/libbasalt.a \
    $(pkg-config --libs $PKGS) -lunistring -lm -pthread -o build/bench_roofline
build/bench_roofline --bin "$BIN" --threads "${ROOFLINE_THREADS:-$(nproc)}" $models
