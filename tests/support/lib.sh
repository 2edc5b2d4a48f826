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
check() { # name, condition-command...
    name=$1; shift
    if "$@"; then pass "$name"; else fail "$name" "$*"; fi
}
