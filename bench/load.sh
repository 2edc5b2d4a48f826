#!/bin/sh
# bench/load.sh [MODEL] — load test of `basalt serve` (issue 4 §8): streaming
# chat clients (bench/load.c) at 1, 8 and 32 concurrent streams with random
# mid-stream disconnects, then an overload burst that must be answered with
# 429s, while the server's RSS is sampled every second; then a shorter run
# against the ASan/UBSan build, whose LeakSanitizer report at exit must be
# clean.  MODEL (a model directory or .gguf, served as "bench") defaults to
# the random-weight demo model `basalt serve` runs without --model.
#
# Fails (exit 1) on any error other than the burst's 429s, on RSS growth in
# the 32-stream run beyond RSS_TOL_KB after its first third (the warm-up),
# on a server exit status other than 0, and on any sanitizer report.
#
# Environment (defaults in brackets):
#   BIN [build/basalt]  SAN_BIN [build-san/basalt; built with `make SAN=1`
#   when missing]  DUR1 [20] DUR8 [30] DUR32 [60] seconds per run;
#   DISCONNECT [0.1] fraction of requests cut mid-stream;
#   BURST_STREAMS [96] BURST_DUR [10] overload burst (BURST_DUR=0 skips it);
#   SAN_STREAMS [8] SAN_DUR [15] sanitizer run, 30 % cut, then a 5 s churn
#   of 96 clients that all hang up on the first event (SAN_DUR=0 skips both);
#   RSS_TOL_KB [8192]; SERVE_ARGS extra `basalt serve` flags;
#   KEEP_LOGS=DIR keeps the server logs, RSS series and load output there.
set -u
here=$(dirname "$0")
BIN=${BIN:-build/basalt}
SAN_BIN=${SAN_BIN:-build-san/basalt}
DUR1=${DUR1:-20} DUR8=${DUR8:-30} DUR32=${DUR32:-60}
DISCONNECT=${DISCONNECT:-0.1}
BURST_STREAMS=${BURST_STREAMS:-96} BURST_DUR=${BURST_DUR:-10}
SAN_STREAMS=${SAN_STREAMS:-8} SAN_DUR=${SAN_DUR:-15}
RSS_TOL_KB=${RSS_TOL_KB:-8192}
SERVE_ARGS=${SERVE_ARGS:-}
MODEL=${1:-}

tmp=$(mktemp -d)
srv_pid='' sampler_pid=''
cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
    [ -n "$srv_pid" ] && kill -KILL "$srv_pid" 2>/dev/null
    [ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$tmp"/*.log "$tmp"/*.err "$tmp"/rss "$tmp"/results.jsonl "$KEEP_LOGS"/ 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PKGS="libcurl jansson"
# shellcheck disable=SC2046  # pkg-config prints several flags
cc -std=c17 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE $(pkg-config --cflags $PKGS) "$here/load.c" \
    $(pkg-config --libs $PKGS) -o "$tmp/load" || exit 1
[ -x "$BIN" ] || make "$BIN" || exit 1
# Copies: other builds may replace build/ binaries while the bench runs.
cp "$BIN" "$tmp/basalt" || exit 1

if [ -n "$MODEL" ]; then
    model_args="--model bench=$MODEL" name=bench
else
    model_args='' name=basalt-demo-random
fi
failed=0
fail() {
    echo "FAIL: $*"
    failed=1
}

# start_server BINARY LOG: sets srv_pid and url, or exits.
start_server() {
    # shellcheck disable=SC2086  # word splitting of the flag lists is wanted
    "$1" serve --port 0 --data "$tmp/data" $model_args $SERVE_ARGS >"$2" 2>&1 &
    srv_pid=$!
    url=
    i=0
    while [ $i -lt 600 ] && [ -z "$url" ]; do
        if ! kill -0 "$srv_pid" 2>/dev/null; then
            echo "basalt serve exited early:"; tail -20 "$2"; exit 1
        fi
        url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$2" | head -1)
        [ -n "$url" ] || sleep 0.2
        i=$((i + 1))
    done
    [ -n "$url" ] || { echo "basalt serve did not come up:"; tail -20 "$2"; exit 1; }
}

# stop_server LOG: SIGTERM, wait; the exit status must be 0.
stop_server() {
    kill -TERM "$srv_pid"
    wait "$srv_pid"
    rc=$?
    srv_pid=
    [ $rc -eq 0 ] || fail "basalt serve exited with status $rc (log: $1)"
    return $rc
}

# field NAME JSON: a top-level number of load's summary line.
field() { printf '%s\n' "$2" | sed -n "s/.*\"$1\":\([-0-9.]*\).*/\1/p"; }
# sub NAME KEY JSON: a number inside the summary's object NAME.
sub() { printf '%s\n' "$3" | sed -n "s/.*\"$1\":{[^}]*\"$2\":\([-0-9.]*\).*/\1/p"; }

# run_load LABEL STREAMS SECONDS ALLOW_429 [LOAD_ARGS...]: one load run;
# prints a table row.
run_load() {
    label=$1 streams=$2 seconds=$3 allow=$4
    shift 4
    line=$("$tmp/load" --url "$url" --model "$name" --streams "$streams" --duration "$seconds" \
        --disconnect "$DISCONNECT" --seed "$streams" "$@" 2>"$tmp/load-$label.err")
    set -- "$label" "$streams" "$seconds" "$allow"
    echo "$line" >>"$tmp/results.jsonl"
    errors=$(field errors "$line")
    n429=$(field http_429 "$line")
    printf '%-8s %7s %9s %10s %9s %9s %8s %8s %9s %5s %4s %6s\n' "$1" "$2" "$(field seconds "$line")" \
        "$(field tokens_per_s "$line")" "$(field per_stream_tokens_per_s "$line")" "$(sub ttft_ms p50 "$line")" \
        "$(sub ttft_ms p95 "$line")" "$(sub itl_ms p50 "$line")" "$(sub itl_ms p95 "$line")" \
        "$(field completed "$line")" "$(field disconnects "$line")" "$n429/${errors:-?}"
    if [ "${errors:-1}" != 0 ]; then
        fail "$1: ${errors:-no summary} errors"; head -20 "$tmp/load-$1.err"
    fi
    [ "$4" = 1 ] || [ "${n429:-0}" = 0 ] || fail "$1: $n429 unexpected 429s"
}

rss_lines() { wc -l <"$tmp/rss" | tr -d ' '; }

# rss_summary FROM TO: min/max/last of samples FROM+1..TO, and the max of
# the first and last thirds.
rss_summary() {
    sed -n "$(($1 + 1)),$2p" "$tmp/rss" | awk '
        { v[NR] = $1; if (NR == 1 || $1 < mn) mn = $1; if ($1 > mx) mx = $1 }
        END {
            t = int(NR / 3); if (t < 1) t = 1
            for (i = 1; i <= t; i++) if (v[i] > f) f = v[i]
            for (i = NR - t + 1; i <= NR; i++) if (v[i] > l) l = v[i]
            printf "%d %d %d %d %d %d\n", NR, mn, mx, v[NR], f, l
        }'
}

echo "== basalt serve ${MODEL:-(random demo model)}, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
start_server "$tmp/basalt" "$tmp/serve.log"
echo "   $url; disconnect fraction $DISCONNECT"
: >"$tmp/rss"
(while kill -0 "$srv_pid" 2>/dev/null; do
    sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$srv_pid/status" >>"$tmp/rss" 2>/dev/null
    sleep 1
done) &
sampler_pid=$!
sleep 1
rss_idle=$(tail -1 "$tmp/rss")

printf '%-8s %7s %9s %10s %9s %9s %8s %8s %9s %5s %4s %6s\n' run streams seconds "tok/s" "tok/s/st" \
    "ttft p50" "p95 ms" "itl p50" "p95 ms" "done" cut 429/err
run_load s1 1 "$DUR1" 0
run_load s8 8 "$DUR8" 0
r0=$(rss_lines)
run_load s32 32 "$DUR32" 0
r1=$(rss_lines)
if [ "$BURST_DUR" != 0 ]; then
    run_load burst "$BURST_STREAMS" "$BURST_DUR" 1
    [ "$(field http_429 "$line")" != 0 ] || echo "note: the burst got no 429s (queue never full)"
fi
r2=$(rss_lines)
stop_server "$tmp/serve.log"
kill "$sampler_pid" 2>/dev/null
sampler_pid=

# shellcheck disable=SC2046  # six numbers, one per positional parameter
set -- $(rss_summary "$r0" "$r1")
echo "RSS (kB): idle $rss_idle; 32-stream run: $1 samples, min $2 max $3 last $4;" \
    "max of first third $5, of last third $6 (growth $(($6 - $5)), tolerance $RSS_TOL_KB)"
[ $(($6 - $5)) -le "$RSS_TOL_KB" ] || fail "RSS grew by $(($6 - $5)) kB in the 32-stream run after warm-up"
# shellcheck disable=SC2046
set -- $(rss_summary 0 "$r2")
echo "RSS (kB) over the whole session: $1 samples, min $2 max $3 last $4"
echo "server log: $(grep -c '"status":200' "$tmp/serve.log") x 200, $(grep -c '"status":499' "$tmp/serve.log") x 499" \
    "(client gone), $(grep -c '"status":429' "$tmp/serve.log") x 429," \
    "$(grep '"status":' "$tmp/serve.log" | grep -vc '"status":\(200\|499\|429\)') other"

if [ "$SAN_DUR" != 0 ]; then
    echo "== LeakSanitizer: $SAN_STREAMS streams for $SAN_DUR s against the ASan+UBSan build"
    [ -x "$SAN_BIN" ] || make SAN=1 "$SAN_BIN" || exit 1
    cp "$SAN_BIN" "$tmp/basalt-san" || exit 1
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
    export ASAN_OPTIONS
    start_server "$tmp/basalt-san" "$tmp/san.log"
    run_load san "$SAN_STREAMS" "$SAN_DUR" 0 --disconnect 0.3
    # Churn: more clients than running + queued slots, each hanging up on
    # its first event, mostly while still queued, so the paths that free
    # cancelled queued requests and 429s run too.
    run_load san-cut 96 5 1 --disconnect 1 --min-tokens 1 --max-tokens 1
    stop_server "$tmp/san.log"
    if grep -q 'Sanitizer\|runtime error:' "$tmp/san.log"; then
        fail "sanitizer report:"
        grep -A30 -m3 'Sanitizer\|runtime error:' "$tmp/san.log" | head -80
    else
        echo "LSan: clean (exit status 0, no sanitizer reports)"
    fi
fi

echo "== load summaries (JSON)"
cat "$tmp/results.jsonl"
[ $failed -eq 0 ] && echo "PASS" || echo "FAIL"
exit $failed
