#!/bin/sh
# bench/roofline.sh [BIN] — one run of bench/roofline.c: this machine's read
# bandwidth and peak FLOP/s, then `basalt bench --json` on every random model
# under bench/models/ and the fraction of those limits each reaches.  Builds
# the Qwen2.5-0.5B-shape BF16 and F16 models if missing (and the Llama-3.2-1B
# shape too with ROOFLINE_LLAMA=1: 2.5 GB each), and Q8_0, Q4_0, Q4_K_M and
# Q6_K GGUF files of the Qwen shape.  Threads: ROOFLINE_THREADS
# (default every CPU).  Needs build/libbasalt.a (make).
set -e
here=$(dirname "$0")
BIN=${1:-build/basalt}
PY=${BASALT_PYTHON:-/usr/bin/python3}
shapes="qwen2.5-0.5b"
[ "${ROOFLINE_LLAMA:-0}" = 1 ] && shapes="$shapes llama3.2-1b"
for shape in $shapes; do
    for dtype in BF16 F16; do
        m="$here/models/$shape-$dtype"
        [ -f "$m/model.safetensors" ] || "$PY" "$here/make_random_model.py" "$m" --dtype "$dtype" --shape "$shape"
    done
done
# The quantized GGUF files of the Qwen shape, written once from the BF16
# model by basalt quantize (ROOFLINE_QUANT=0 skips them).
if [ "${ROOFLINE_QUANT:-1}" = 1 ]; then
    for q in q8_0 q4_0 q4_k_m q6_k; do
        g="$here/models/qwen2.5-0.5b-$q.gguf"
        [ -f "$g" ] || "$BIN" quantize "$here/models/qwen2.5-0.5b-BF16" "$g" "$q"
    done
fi
models=$(for m in "$here"/models/*/ "$here"/models/*.gguf; do
    [ -f "$m/model.safetensors" ] || [ "${m%.gguf}" != "$m" ] && [ -e "$m" ] && echo "${m%/}"
done)
PKGS="libmicrohttpd jansson libpcre2-8 openblas libcurl sqlite3 yaml-0.1 libpq hiredis"
cc -std=c17 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -Isrc "$here/roofline.c" build/libbasalt.a \
    $(pkg-config --libs $PKGS) -lunistring -lm -pthread -o build/bench_roofline
build/bench_roofline --bin "$BIN" --threads "${ROOFLINE_THREADS:-$(nproc)}" $models
