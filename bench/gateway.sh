#!/bin/sh
# bench/gateway.sh — the gateway's added latency (issue 8): the fast mock
# upstream directly vs `basalt serve --config` in front of it (a plain remote
# model alias), at 1 and 64 concurrent keep-alive clients, with the C load
# generator bench/gateway_load.c; then Portkey's open-source gateway
# (@portkey-ai/gateway, from npm into a temp dir) in front of the same mock
# when it installs.  Prints one JSON line per run and a summary; not a test.
#   bench/gateway.sh [SECONDS per run, default 5]
# BASALT_BIN: the basalt binary to measure (default build/basalt);
# PORTKEY=0 skips Portkey (for before/after runs of basalt alone).
set -e
cd "$(dirname "$0")/.."
SECS=${1:-5}
BIN=${BASALT_BIN:-build/basalt}
MOCK=build/tests/gateway/mock_upstream
tmp=$(mktemp -d)
pids=
trap 'for p in $pids $(cat "$tmp/pk.pid" 2>/dev/null); do kill $p 2>/dev/null; done; rm -rf "$tmp"' EXIT
cc -std=c17 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread bench/gateway_load.c -o "$tmp/load"

wait_port() { # log file, sed pattern -> port
    for _ in $(seq 200); do
        p=$(sed -n "$2" "$1" | head -1)
        [ -n "$p" ] && { echo "$p"; return; }
        sleep 0.05
    done
    echo "no port in $1" >&2; cat "$1" >&2; exit 1
}

"$MOCK" --port 0 --name fast > "$tmp/mock.log" 2>&1 & pids="$pids $!"
mp=$(wait_port "$tmp/mock.log" 's/^listening on \([0-9]*\).*/\1/p')
cat > "$tmp/gw.yaml" <<YAML
providers:
  - {name: mock, base_url: "http://127.0.0.1:$mp/v1"}
models:
  - {name: fast, provider: mock, model: mock-model}
YAML
"$BIN" serve --config "$tmp/gw.yaml" --random --port 0 --data "$tmp/data" > "$tmp/gw.log" 2>&1 & pids="$pids $!"
gp=$(wait_port "$tmp/gw.log" 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p')

body='{"model":"fast","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
run() { # name port clients [headers...]
    name=$1 port=$2 c=$3; shift 3
    "$tmp/load" "$port" /v1/chat/completions "$body" "$c" 1 "$@" > /dev/null # warm-up
    printf '{"target":"%s",' "$name"
    "$tmp/load" "$port" /v1/chat/completions "$body" "$c" "$SECS" "$@" | sed 's/^{//'
}
{
    for c in 1 64; do
        run direct "$mp" $c
        run basalt "$gp" $c
    done
    pk=${PORTKEY_DIR:-$tmp/portkey}
    if [ "${PORTKEY:-1}" = 0 ]; then
        :
    elif [ ! -x "$pk/node_modules/.bin/gateway" ] && ! (mkdir -p "$pk" && cd "$pk" &&
            npm install --no-audit --no-fund @portkey-ai/gateway > npm.log 2>&1); then
        echo "{\"target\":\"portkey\",\"skipped\":\"npm install failed: $(tail -1 "$pk/npm.log")\"}"
    else
        node "$pk/node_modules/@portkey-ai/gateway/build/start-server.js" --headless --port=18787 > "$tmp/pk.log" 2>&1 &
        echo $! > "$tmp/pk.pid" # this block runs in the pipeline's subshell: the trap reads the file
        for _ in $(seq 100); do grep -q 18787 "$tmp/pk.log" && break; sleep 0.1; done
        for c in 1 64; do
            run portkey 18787 $c "x-portkey-provider: openai" "x-portkey-custom-host: http://127.0.0.1:$mp/v1" \
                "Authorization: Bearer sk-bench"
        done
    fi
} | tee "$tmp/results.jsonl"
/usr/bin/python3 - "$tmp/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {(r["target"], r.get("clients")): r for r in rows if "rps" in r}
for c in (1, 64):
    d = by.get(("direct", c))
    for t in ("basalt", "portkey"):
        r = by.get((t, c))
        if d and r:
            print("%-8s clients=%-3d added p50 %+8.1f us  added p99 %+9.1f us  throughput %5.1f %% of direct (errors %d)"
                  % (t, c, r["p50_us"] - d["p50_us"], r["p99_us"] - d["p99_us"], 100 * r["rps"] / d["rps"], r["errors"]))
PY
