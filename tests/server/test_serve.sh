#!/bin/sh
# `basalt serve` end to end: a real server process on a free loopback port,
# driven over HTTP by serve_client.py (standard library only).
BIN=${BASALT_BIN:-build/basalt}
PY=${BASALT_PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" "$(dirname "$0")/serve_client.py" "$BIN" "$tmp"
