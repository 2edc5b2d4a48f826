#!/bin/sh
# LoRA adapters in `basalt serve` (--lora, /v1/models, runtime load/unload),
# driven over HTTP by lora_client.py.
. tests/support/lib.sh
"$PY" "$(dirname "$0")/lora_client.py" "$BIN" "$tmp"
