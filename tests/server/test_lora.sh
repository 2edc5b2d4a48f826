#!/bin/sh
# LoRA adapters in `basalt serve` (--lora, /v1/models, runtime load/unload),
# driven over HTTP by lora_client.py.
BIN=${BASALT_BIN:-build/basalt}
PY=${BASALT_PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" "$(dirname "$0")/lora_client.py" "$BIN" "$tmp"
