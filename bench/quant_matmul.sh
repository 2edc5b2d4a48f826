#!/bin/sh
# bench/quant_matmul.sh [LIB] [THREADS] [REPS] — build bench/quant_matmul.c
# against LIB (default build/libbasalt.a; pass another tree's library to
# compare before/after) and run it.  Needs the library built (make).
set -e
here=$(dirname "$0")
lib=${1:-build/libbasalt.a}
cc -std=c17 -O2 -D_GNU_SOURCE -pthread -Isrc "$here/quant_matmul.c" "$lib" -lm -pthread -o build/bench_quant_matmul
build/bench_quant_matmul "${2:-2}" "${3:-5}"
