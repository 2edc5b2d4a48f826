#!/bin/sh
# `basalt serve` end to end: a real server process on a free loopback port,
# driven over HTTP by serve_client.py (standard library only).
. tests/support/lib.sh
"$PY" "$(dirname "$0")/serve_client.py" "$BIN" "$tmp"
