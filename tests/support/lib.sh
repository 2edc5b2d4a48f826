# tests/support/lib.sh — sourced by the shell tests (run from the repo root):
# the binaries under test, a temp dir removed at exit together with any
# server the test started (its PID in $serve), and the PASS/FAIL/check
# helpers whose lines tests/run.sh counts.
BIN=${BASALT_BIN:-build/basalt}
PY=${BASALT_PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
serve=
trap '[ -n "$serve" ] && kill "$serve" 2>/dev/null; rm -rf "$tmp"' EXIT

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
# HTTP tests keep the last response's body in $tmp/body and its status in
# $tmp/status (each test's own req() fills them).
status_is() { [ "$(cat "$tmp/status")" = "$1" ]; }
# A Python expression over the response body j must be true / is printed.
json_ok() { "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$tmp/body" "$1"; }
json_get() { "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$tmp/body" "$1"; }

check() { # name, condition-command...
    name=$1; shift
    if "$@"; then pass "$name"; else fail "$name" "$*"; fi
}
