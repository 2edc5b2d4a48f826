#!/bin/sh
# The real clients users have (openai, LangChain, the Vercel AI SDK) against a
# `basalt serve` of a tiny random chat model: runs clients.mjs and batches.mjs
# (the Batch API with the openai SDK) and passes their PASS/FAIL lines through.  SKIPs (one line) without Node 18+, or when the
# pinned packages are not installed and `npm ci` cannot install them (offline).
. tests/support/lib.sh
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v node > /dev/null 2>&1; then echo "SKIP clients: node is not installed"; exit 0; fi
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
    echo "SKIP clients: node $(node --version) is older than 18"; exit 0
fi
if [ ! -d "$here/node_modules" ]; then
    if ! (cd "$here" && npm ci --no-audit --no-fund) > "$tmp/npm.log" 2>&1; then
        rm -rf "$here/node_modules" # a half install would pass for a whole one next time
        echo "SKIP clients: npm ci failed: $(grep -m1 -i 'err' "$tmp/npm.log" || tail -n 1 "$tmp/npm.log")"
        exit 0
    fi
fi
if ! "$PY" -c 'import sys; sys.path[:0] = [sys.argv[1] + "/../server", sys.argv[1] + "/../oracle"]
import serve_client; serve_client.make_model(sys.argv[2], max_pos=4096)' "$here" "$tmp/tiny" 2> "$tmp/model.err"; then
    echo "SKIP clients: cannot build the test model ($(tail -n 1 "$tmp/model.err"))"
    exit 0
fi

# Tool definitions make long prompts with the byte-level vocabulary: 2048 positions.
"$BIN" serve --port 0 --model "tiny=$tmp/tiny" --ctx 2048 --threads 1 --data "$tmp/data" > "$tmp/serve.log" 2>&1 &
serve=$!
url=
for _ in $(seq 600); do
    url=$(sed -n 's|.*listening on \(http://[^ ]*\).*|\1|p' "$tmp/serve.log")
    [ -n "$url" ] && break
    kill -0 "$serve" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "FAIL clients: the server did not start: $(tail -n 3 "$tmp/serve.log")"
    exit 1
fi
BASALT_URL="$url/v1" BASALT_MODEL=tiny node "$here/clients.mjs"
rc=$?
BASALT_URL="$url/v1" BASALT_MODEL=tiny node "$here/batches.mjs" || rc=1
kill "$serve" 2>/dev/null
wait "$serve" 2>/dev/null
if [ "$rc" != 0 ]; then echo "---- server log (tail) ----"; tail -n 20 "$tmp/serve.log"; fi
exit "$rc"
