#!/bin/sh
# bench/batch_decode.sh [MODEL] [N...] — aggregate decode tokens/s of the
# scheduler at N concurrent streams (default 1 and 8) on MODEL (default the
# random Qwen2.5-0.5B-shape BF16 model bench/run.sh builds).  Needs
# build/libbasalt.a (make).
set -e
here=$(dirname "$0")
PY=${BASALT_PYTHON:-/usr/bin/python3}
m=${1:-$here/models/qwen2.5-0.5b-BF16}
[ $# -gt 0 ] && shift
[ -f "$m/model.safetensors" ] || [ -f "$m" ] || "$PY" "$here/make_random_model.py" "$m" --dtype BF16
PKGS="libmicrohttpd jansson libpcre2-8 openblas libcurl sqlite3 yaml-0.1 libpq hiredis"
cc -std=c17 -O2 -D_GNU_SOURCE -pthread -Isrc "$here/batch_decode.c" build/libbasalt.a \
    $(pkg-config --libs $PKGS) -lunistring -lm -pthread -o build/bench_batch_decode
[ $# -eq 0 ] && set -- 1 8
build/bench_batch_decode "$m" --prompt 64 --gen 32 "$@"
