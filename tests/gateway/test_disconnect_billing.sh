#!/bin/sh
# Billing when the usage never arrives, and the invocation log's errorCode,
# end to end: `basalt serve --config` with a priced remote model on the mock
# upstream (one that streams slowly or cuts its stream on demand) and the
# local demo model.
#   (a) a client that hangs up after the first chunk of a slow proxied
#       stream (the usage chunk would come last) is charged its reservation,
#       not 0: the usage row, the key's TPM window (x-ratelimit-remaining-
#       tokens of the next request) and its budget (the next refusal's "USD
#       left") all count it; the request line and invocation log say
#       usage_estimated / usageEstimated and errorCode client_closed_request;
#   (b) an upstream stream cut before its usage chunk: the same estimate;
#   (c) a client that hangs up on a local model's stream is charged what the
#       engine counted (below the reservation), not an estimate;
#   (d) errorCode of a 4xx (an upstream 400, the budget's 429) and a 5xx (an
#       upstream 500 answered 502), null on a success.
. tests/support/lib.sh
MOCK=${BASALT_MOCK_UPSTREAM:-build/tests/gateway/mock_upstream}
if [ ! -x "$BIN" ] || [ ! -x "$MOCK" ]; then echo "SKIP disconnect_billing: $BIN or $MOCK not built"; exit 0; fi
"$PY" - "$BIN" "$MOCK" "$tmp" <<'EOF'
import json, os, re, socket, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "support"))
from gwtest import *

BIN, MOCK, WORK = sys.argv[1:4]
PRICE_IN, PRICE_OUT = 1000.0, 2000.0  # USD per million tokens: 0.001 / 0.002 per token
MESSAGES = [{"role": "user", "content": "hi there"}]
# The reservation (docs/governance.md): one token per byte of the body's
# strings but the model ("user" + "hi there") plus 32 per message (+1), and
# max_tokens, priced at the model's price.
PROMPT_EST = 4 + 8 + 32 * 2
LONG = 50  # max_tokens of the streams: 55 chunks from the mock
TPM, BUDGET = 100000, 0.3


def reserved_cost(max_tokens):
    return (PROMPT_EST * PRICE_IN + max_tokens * PRICE_OUT) / 1e6


def chat_body(model, max_tokens, stream):
    return {"model": model, "messages": MESSAGES, "max_tokens": max_tokens, "stream": stream}


def hang_up_after(port, key, body, events):
    """Streams body and closes the connection once that many events are in:
    (status line, x-request-id)."""
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: basalt\r\nAuthorization: Bearer " + key.encode() +
              b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    got = b""
    while got.count(b"data:") < events:
        piece = s.recv(4096)
        if not piece:
            break
        got += piece
    s.close()
    head = got.split(b"\r\n\r\n")[0].decode("latin-1")
    rid = re.search(r"(?im)^x-request-id: *(\S+)", head)
    return head.split("\r\n")[0], rid.group(1) if rid else None


def mkkey(port, admin, name, budget=None):
    return make_key(port, admin, name, budget_usd=budget, rpm=10000, tpm=TPM)


def request_line(log, rid):
    for _ in range(100):
        for m in re.findall(r"^\{.*\}$", open(log).read(), re.M):
            line = json.loads(m)
            if line.get("request_id") == rid:
                return line
        time.sleep(0.1)
    return {}


def main():
    mock, mport = start_mock(MOCK, WORK + "/mock.log")
    data, cfg, log = WORK + "/data", WORK + "/gw.yaml", WORK + "/serve.log"
    priced_config(cfg, mport, PRICE_IN, PRICE_OUT)
    admin, _ = cli_admin_key(BIN, data)
    _, port = start_serve(BIN, cfg, data, log, ["--threads", "1"])

    # (a) hang up on a slow proxied stream
    key, key_id = mkkey(port, admin, "hangs-up", BUDGET)
    fresh_minute(40)
    mock_faults(mport, {"always": {"chunk_delay_ms": 300}})
    status, rid = hang_up_after(port, key, chat_body("priced", LONG, True), 1)
    mock_faults(mport)
    check("remote_stream_began", " 200 " in status + " " and rid, status)
    charged = reserved_cost(LONG)
    row = key_usage(port, admin, key_id, 1)
    check("remote_hangup_charged_reservation",
          row.get("prompt_tokens") == PROMPT_EST and row.get("completion_tokens") == LONG and
          abs(row.get("cost_usd", -1) - charged) < 1e-9 and row.get("errors") == 1, json.dumps(row))
    line = request_line(log, rid)
    check("remote_hangup_line_estimated", line.get("status") == 499 and line.get("usage_estimated") is True and
          line.get("prompt_tokens") == PROMPT_EST and line.get("completion_tokens") == LONG and
          abs(line.get("cost_usd", -1) - charged) < 1e-9, json.dumps(line))
    inv = invocation(data, rid)
    check("remote_hangup_invocation_estimated",
          inv.get("usageEstimated") is True and inv.get("errorCode") == "client_closed_request" and
          inv.get("input", {}).get("inputTokenCount") == PROMPT_EST and
          inv.get("output", {}).get("outputTokenCount") == LONG, json.dumps(inv))
    # The TPM window counts the charge: the next admission's remaining
    # tokens are the limit less it and the next request's own reservation.
    st, h, j = req(port, "POST", "/v1/chat/completions", chat_body("priced", 4, False), key)
    check("remote_hangup_tpm_counted", st == 200 and
          h.get("x-ratelimit-remaining-tokens") == str(TPM - (PROMPT_EST + LONG) - (PROMPT_EST + 4)),
          "%d %s" % (st, h.get("x-ratelimit-remaining-tokens")))
    spent = charged + (j["usage"]["prompt_tokens"] * PRICE_IN + j["usage"]["completion_tokens"] * PRICE_OUT) / 1e6
    # The budget counts it: another long stream no longer fits (it would
    # have, had the hang-up been free), and the refusal says what is left.
    st, h, j = req(port, "POST", "/v1/chat/completions", chat_body("priced", LONG, True), key)
    left = re.search(r"\(([0-9.]+) USD left\)", j["error"]["message"]) if st == 429 else None
    check("remote_hangup_budget_counted", st == 429 and j["error"]["code"] == "budget_exceeded" and left and
          abs(float(left.group(1)) - (BUDGET - spent)) < 1e-6 and BUDGET - (spent - charged) >= charged,
          "%d %s" % (st, json.dumps(j) if isinstance(j, dict) else j))
    inv = invocation(data, h.get("x-request-id"))
    check("errorcode_budget_429", inv.get("status") == 429 and inv.get("errorCode") == "budget_exceeded" and
          inv.get("usageEstimated") is False, json.dumps(inv))

    # (b) an upstream stream cut before its usage chunk
    key, key_id = mkkey(port, admin, "cut")
    mock_faults(mport, [{"cut_after_chunks": 3}])
    st, h, body = req(port, "POST", "/v1/chat/completions", chat_body("priced", LONG, True), key)
    rid = h.get("x-request-id")
    check("cut_stream_relayed", st == 200 and b"upstream stream ended early" in body, "%d %r" % (st, body[-300:]))
    row = key_usage(port, admin, key_id, 1)
    check("cut_stream_charged_reservation", row.get("prompt_tokens") == PROMPT_EST and
          row.get("completion_tokens") == LONG and abs(row.get("cost_usd", -1) - reserved_cost(LONG)) < 1e-9,
          json.dumps(row))
    inv = invocation(data, rid)
    check("cut_stream_invocation_estimated", inv.get("usageEstimated") is True and inv.get("errorCode") is None,
          json.dumps(inv))

    # A stream whose usage chunk arrived is charged that usage (the mock's:
    # 8 prompt characters / 4), not estimated.
    st, h, body = req(port, "POST", "/v1/chat/completions", chat_body("priced", LONG, True), key)
    inv = invocation(data, h.get("x-request-id"))
    check("whole_stream_actual_usage", st == 200 and inv.get("usageEstimated") is False and
          inv.get("errorCode") is None and inv.get("input", {}).get("inputTokenCount") == 2 and inv.get("output", {}).get("outputTokenCount") == LONG,
          json.dumps(inv))

    # (c) hang up on a local model's stream once tokens came (the first
    # event is the role chunk): what the engine generated
    key, key_id = mkkey(port, admin, "local")
    status, rid = hang_up_after(port, key, chat_body("basalt-demo-random", 2000, True), 4)
    check("local_stream_began", " 200 " in status + " " and rid, status)
    row = key_usage(port, admin, key_id, 1)
    line = request_line(log, rid)
    check("local_hangup_actual_count", "usage_estimated" not in line and
          0 < row.get("prompt_tokens", 0) < PROMPT_EST and 0 <= row.get("completion_tokens", -1) < 2000 and
          row.get("prompt_tokens") == line.get("prompt_tokens") and
          row.get("completion_tokens") == line.get("completion_tokens"), "%s %s" % (json.dumps(row), json.dumps(line)))

    # (d) errorCode of an upstream 4xx passed through and a 5xx
    mock_faults(mport, {"always": {"status": 400, "code": "invalid_value", "message": "bad temperature"}})
    st, h, j = req(port, "POST", "/v1/chat/completions", chat_body("priced", 4, False), key)
    inv = invocation(data, h.get("x-request-id"))
    check("errorcode_upstream_400", st == 400 and inv.get("status") == 400 and inv.get("errorCode") == "invalid_value"
          and inv.get("usageEstimated") is False, "%d %s" % (st, json.dumps(inv)))
    mock_faults(mport, {"always": {"status": 500}})
    st, h, j = req(port, "POST", "/v1/chat/completions", chat_body("priced", 4, False), key)
    inv = invocation(data, h.get("x-request-id"))
    check("errorcode_upstream_500", st == 502 and inv.get("status") == 502 and
          inv.get("errorCode") == j["error"]["code"] == "upstream_error" and inv.get("output", {}).get(
              "outputTokenCount") == 0 and inv.get("costUsd") == 0, "%d %s %s" % (st, json.dumps(j), json.dumps(inv)))
    mock_faults(mport)

    # (e) an upstream that reports 0 tokens (the mock counts 2 input
    # characters as 0) is charged 0, not the reservation
    st, h, j = req(port, "POST", "/v1/embeddings", {"model": "priced", "input": "hi"}, key)
    inv = invocation(data, h.get("x-request-id"))
    check("zero_reported_usage_exact", st == 200 and j["usage"]["prompt_tokens"] == 0 and
          inv.get("usageEstimated") is False and inv.get("input", {}).get("inputTokenCount") == 0 and
          inv.get("costUsd") == 0, "%d %s" % (st, json.dumps(inv)))


try:
    main()
finally:
    stop_all(graceful=True)
EOF
