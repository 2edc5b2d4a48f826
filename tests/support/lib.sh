# tests/support/lib.sh — sourced by the shell tests (run from the repo root):
# the binaries under test, a temp dir removed at exit together with any
# server the test started (its PID in $serve), the PASS/FAIL/check
# helpers whose lines tests/run.sh counts, and the HTTP helpers of the
# tests that drive a `basalt serve` with curl.  (The Python helpers of the
# gateway tests' embedded programs are tests/support/gwtest.py.)
BIN=${BASALT_BIN:-build/basalt}
PY=${BASALT_PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
serve=
trap '[ -n "$serve" ] && kill "$serve" 2>/dev/null; rm -rf "$tmp"' EXIT

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
# HTTP tests keep the last response's body in $tmp/body and its status in
# $tmp/status (req() below, or a test's own req(), fills them).
status_is() { [ "$(cat "$tmp/status")" = "$1" ]; }
# A Python expression over the response body j must be true / is printed.
json_ok() { "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$tmp/body" "$1"; }
json_get() { "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$tmp/body" "$1"; }

# check NAME COMMAND...: PASS if the command succeeds, else FAIL with the
# command; with CHECK_BODY=N set, the FAIL also shows the last response's
# status and first N bytes of its body.
CHECK_BODY=
check() { # name, condition-command...
    name=$1; shift
    if "$@"; then pass "$name"
    elif [ -n "$CHECK_BODY" ]; then
        fail "$name" "$* (status $(cat "$tmp/status"), body $(head -c "$CHECK_BODY" "$tmp/body"))"
    else fail "$name" "$*"; fi
}

# log_wait LOG SED_SCRIPT [TRIES]: prints the first line `sed -n SED_SCRIPT`
# makes of LOG, polling every 0.1 s (TRIES times, default 100); status 1 if
# none comes.
log_wait() {
    for _ in $(seq "${3:-100}"); do
        _v=$(sed -n "$2" "$1" | head -1)
        [ -n "$_v" ] && { echo "$_v"; return 0; }
        sleep 0.1
    done
    return 1
}
# wait_url LOG [TRIES]: the http://host:port that a `basalt serve` writing
# LOG says it listens on (log_wait).
wait_url() { log_wait "$1" 's/.*listening on \(http:[0-9.:/]*\).*/\1/p' "${2:-100}"; }
# start_serve LOG ARGS...: `$BIN serve ARGS` in the background, output to LOG
# (emptied first, so a restart does not read the last run's URL), its PID in
# $serve (killed at exit) and its URL in $url; if it never listens, FAIL
# serve_start with the log and exit 1.
start_serve() {
    _log=$1; shift
    : > "$_log"
    "$BIN" serve "$@" > "$_log" 2>&1 &
    serve=$!
    url=$(wait_url "$_log") || { fail serve_start "$(cat "$_log")"; exit 1; }
}
# stop_serve: SIGTERM to $serve, waits for it, forgets it.
stop_serve() { kill "$serve" && wait "$serve" 2>/dev/null; serve=; }
# req KEY CURL_ARGS...: curl with "Authorization: Bearer KEY" ('' for no
# key): body in $tmp/body, status in $tmp/status, headers in $tmp/headers.
req() {
    _k=$1; shift
    if [ -n "$_k" ]; then set -- -H "Authorization: Bearer $_k" "$@"; fi
    curl -s -D "$tmp/headers" -o "$tmp/body" -w '%{http_code}' "$@" > "$tmp/status"
}
# header NAME: that header of the last req() response (case-insensitive).
header() { tr -d '\r' < "$tmp/headers" | sed -n "s/^$1: //Ip" | head -1; }
# mkkey NAME [JSON_FIELDS]: a key made with $admin at $url's admin API
# (JSON_FIELDS like ',"rpm":2'): its secret on stdout, its id in $tmp/id_NAME.
mkkey() {
    req "$admin" -X POST "$url/v1/admin/keys" -H 'Content-Type: application/json' -d "{\"name\":\"$1\"$2}"
    json_get 'j["id"]' > "$tmp/id_$1"
    json_get 'j["secret"]'
}
# fresh_minute [SECOND]: waits until the minute's second is at most SECOND
# (default 30), so that a fixed rate-limit window does not roll over mid-check.
fresh_minute() { while [ "$(date +%S | sed 's/^0//')" -gt "${1:-30}" ]; do sleep 1; done; }
