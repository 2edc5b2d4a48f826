#!/bin/sh
# Guardrails in the server end to end: `basalt serve --config` with remote
# models over an in-process Python upstream whose replies the test sets,
# driven by guard_client.py (standard library only).
. tests/support/lib.sh
"$PY" "$(dirname "$0")/guard_client.py" "$BIN" "$tmp"
