#!/bin/sh
# bench/gateway.sh — the gateway's added latency (issue 8): the fast mock
# upstream directly vs `basalt serve --config` in front of it (a plain remote
# model alias), at 1 and 64 concurrent keep-alive clients, with the C load
# generator bench/gateway_load.c; then Portkey's open-source gateway
# (@portkey-ai/gateway, from npm into a temp dir) in front of the same mock
# when it installs.  bench/mhd_echo.c, libmicrohttpd as basalt runs it
# answering at once, gives the HTTP server's floor.  Prints one JSON line per
# run and a summary; not a test.
#   bench/gateway.sh [SECONDS per run, default 5]
# BASALT_BIN: the basalt binary to measure (default build/basalt);
# PORTKEY=0 skips Portkey (for before/after runs of basalt alone).
#
# CPU pinning (as the reference harness does, ../shared/reference/gateway.md
# §2.7): the mock and the load generator run on BENCH_LOAD_CPUS (default 0),
# the gateway under test on BENCH_GW_CPUS (default 1), and "direct" is
# measured under the same pinning of mock + load generator.  Unpinned, on a
# small machine the gateway takes its CPU time from the mock and the load
# generator, so "throughput vs direct" compares gateway + mock against the
# mock alone on the same cores and cannot approach 100 % however cheap the
# gateway is.  BENCH_PIN=0 runs everything unpinned (those numbers are worth
# keeping too); without taskset or with fewer than 2 CPUs the run is
# unpinned and says so.
set -e
cd "$(dirname "$0")/.."
SECS=${1:-5}
LOAD_CPUS=${BENCH_LOAD_CPUS:-0}
GW_CPUS=${BENCH_GW_CPUS:-1}
if [ "${BENCH_PIN:-1}" != 0 ] && command -v taskset > /dev/null && [ "$(nproc)" -ge 2 ]; then
    on_load="taskset -c $LOAD_CPUS" on_gw="taskset -c $GW_CPUS"
    pinning="load+mock on CPU $LOAD_CPUS, gateway on CPU $GW_CPUS"
else
    on_load= on_gw=
    pinning=unpinned
fi
echo "# pinning: $pinning; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
BIN=${BASALT_BIN:-build/basalt}
MOCK=build/tests/gateway/mock_upstream
tmp=$(mktemp -d)
pids=
trap 'for p in $pids $(cat "$tmp/pk.pid" 2>/dev/null); do kill $p 2>/dev/null; done; rm -rf "$tmp"' EXIT
cc -std=c17 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread bench/gateway_load.c -o "$tmp/load"
cc -std=c17 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread bench/mhd_echo.c \
    $(pkg-config --cflags --libs libmicrohttpd) -o "$tmp/mhd_echo"

wait_port() { # log file, sed pattern -> port
    for _ in $(seq 200); do
        p=$(sed -n "$2" "$1" | head -1)
        [ -n "$p" ] && { echo "$p"; return; }
        sleep 0.05
    done
    echo "no port in $1" >&2; cat "$1" >&2; exit 1
}

$on_load "$MOCK" --port 0 --name fast > "$tmp/mock.log" 2>&1 & mock_pid=$! pids="$pids $!"
mp=$(wait_port "$tmp/mock.log" 's/^listening on \([0-9]*\).*/\1/p')
cat > "$tmp/gw.yaml" <<YAML
providers:
  - {name: mock, base_url: "http://127.0.0.1:$mp/v1"}
models:
  - {name: fast, provider: mock, model: mock-model}
YAML
$on_gw "$BIN" serve --config "$tmp/gw.yaml" --random --port 0 --data "$tmp/data" > "$tmp/gw.log" 2>&1 & gw_pid=$! pids="$pids $!"
gp=$(wait_port "$tmp/gw.log" 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p')
# The HTTP server's floor: libmicrohttpd as basalt runs it, answering at once.
$on_gw "$tmp/mhd_echo" > "$tmp/echo.log" 2>&1 & echo_pid=$! pids="$pids $!"
ep=$(wait_port "$tmp/echo.log" 's/^listening on \([0-9]*\).*/\1/p')

body='{"model":"fast","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
# With perf, the server's CPU time over the run is reported too (server_cpu_ms:
# the mock's for direct, the gateway's otherwise): per request, it is far less
# sensitive to a busy machine than latency is.
perf_ok=$(perf stat -e task-clock true > /dev/null 2>&1 && echo 1 || true)
run() { # name port clients server-pid [headers...]
    name=$1 port=$2 c=$3 pid=$4; shift 4
    $on_load "$tmp/load" "$port" /v1/chat/completions "$body" "$c" 1 "$@" > /dev/null # warm-up
    rm -f "$tmp/stat"
    perf_pid=
    if [ -n "$perf_ok" ]; then
        # attached before the run's connections open, so their threads count
        perf stat -x, -e task-clock -p "$pid" -o "$tmp/stat" -- sleep "$((SECS + 1))" 2> /dev/null &
        perf_pid=$!
        sleep 0.3
    fi
    out=$($on_load "$tmp/load" "$port" /v1/chat/completions "$body" "$c" "$SECS" "$@")
    [ -z "$perf_pid" ] || wait "$perf_pid" || true
    cpu=$(sed -n 's/^\([0-9.]*\),msec,task-clock.*/\1/p' "$tmp/stat" 2> /dev/null)
    printf '{"target":"%s","pinning":"%s",%s%s\n' "$name" "$pinning" "${cpu:+\"server_cpu_ms\":$cpu,}" "${out#\{}"
}
{
    for c in 1 64; do
        run direct "$mp" $c $mock_pid
        run mhd_echo "$ep" $c $echo_pid
        run basalt "$gp" $c $gw_pid
    done
    pk=${PORTKEY_DIR:-$tmp/portkey}
    if [ "${PORTKEY:-1}" = 0 ]; then
        :
    elif [ ! -x "$pk/node_modules/.bin/gateway" ] && ! (mkdir -p "$pk" && cd "$pk" &&
            npm install --no-audit --no-fund @portkey-ai/gateway > npm.log 2>&1); then
        echo "{\"target\":\"portkey\",\"skipped\":\"npm install failed: $(tail -1 "$pk/npm.log")\"}"
    else
        $on_gw node "$pk/node_modules/@portkey-ai/gateway/build/start-server.js" --headless --port=18787 > "$tmp/pk.log" 2>&1 &
        pk_pid=$!
        echo $pk_pid > "$tmp/pk.pid" # this block runs in the pipeline's subshell: the trap reads the file
        for _ in $(seq 100); do grep -q 18787 "$tmp/pk.log" && break; sleep 0.1; done
        for c in 1 64; do
            run portkey 18787 $c $pk_pid "x-portkey-provider: openai" "x-portkey-custom-host: http://127.0.0.1:$mp/v1" \
                "Authorization: Bearer sk-bench"
        done
    fi
} | tee "$tmp/results.jsonl"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
/usr/bin/python3 - "$tmp/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {(r["target"], r.get("clients")): r for r in rows if "rps" in r}
for c in (1, 64):
    d = by.get(("direct", c))
    for t in ("mhd_echo", "basalt", "portkey"):
        r = by.get((t, c))
        if d and r:
            cpu = ("  server CPU %6.1f us/req (mock direct %.1f)"
                   % (1e3 * r["server_cpu_ms"] / r["requests"], 1e3 * d["server_cpu_ms"] / d["requests"])
                   if "server_cpu_ms" in r and "server_cpu_ms" in d and r["requests"] and d["requests"] else "")
            print("%-8s clients=%-3d added p50 %+8.1f us  added p99 %+9.1f us  throughput %5.1f %% of direct (errors %d)%s"
                  % (t, c, r["p50_us"] - d["p50_us"], r["p99_us"] - d["p99_us"], 100 * r["rps"] / d["rps"], r["errors"], cpu))
PY
