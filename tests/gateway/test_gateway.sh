#!/bin/sh
# The gateway end to end (issue 8): real mock upstreams, a second basalt as
# an upstream, and `basalt serve --config` on loopback, driven by
# gateway_client.py (standard library; PyTorch only to write the tiny local
# model).  Skips without PyTorch.
. tests/support/lib.sh
MOCK=${BASALT_MOCK_UPSTREAM:-build/tests/gateway/mock_upstream}
if ! "$PY" -c 'import torch' 2>/dev/null; then echo "SKIP gateway: no PyTorch for the tiny local model"; exit 0; fi
"$PY" "$(dirname "$0")/gateway_client.py" "$BIN" "$MOCK" "$tmp"
