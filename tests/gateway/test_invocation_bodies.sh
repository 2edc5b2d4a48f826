#!/bin/sh
# Request and response bodies in the invocation log, end to end: `basalt
# serve --config` with a remote model on the mock upstream, open mode.
#   (a) usage.log_bodies: true — a plain JSON response is logged as
#       outputBodyJson equal to what the client got; an SSE stream as the
#       list of its chunks' JSON plus outputText (the streamed text) and the
#       final usage chunk; both with outputBodyBytes and
#       outputBodyTruncated: false; the request as inputBodyJson;
#   (b) a response past the 1 MiB cap (plain and streamed) is cut and marked
#       outputBodyTruncated: true with the full outputBodyBytes; a cut JSON
#       body is kept as outputBodyText, a cut stream lists only whole events;
#   (c) log_bodies off (the default): no body fields at all.
. tests/support/lib.sh
MOCK=${BASALT_MOCK_UPSTREAM:-build/tests/gateway/mock_upstream}
if [ ! -x "$BIN" ] || [ ! -x "$MOCK" ]; then echo "SKIP invocation_bodies: $BIN or $MOCK not built"; exit 0; fi
"$PY" - "$BIN" "$MOCK" "$tmp" <<'EOF'
import json, os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "support"))
from gwtest import *

BIN, MOCK, WORK = sys.argv[1:4]
CAP = 1 << 20


def post(port, path, body):
    st, h, raw = req(port, "POST", path, body, timeout=120, raw=True)
    return st, h.get("x-request-id"), raw


def serve(name, mock_port, bodies):
    data, cfg, log = "%s/%s-data" % (WORK, name), "%s/%s.yaml" % (WORK, name), "%s/%s.log" % (WORK, name)
    usage = "usage: {log_bodies: true}" if bodies else ""
    open(cfg, "w").write(f"""
providers:
  - {{name: mock, base_url: "http://127.0.0.1:{mock_port}/v1"}}
models:
  - {{name: m, provider: mock, model: up}}
{usage}
""")
    p, port = start_serve(BIN, cfg, data, log)
    return p, port, data


def chat(port, max_tokens, stream=False):
    body = {"model": "m", "messages": [{"role": "user", "content": "tell me"}], "max_tokens": max_tokens}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body, post(port, "/v1/chat/completions", body)


def sse_events(raw):
    return [json.loads(l[6:]) for l in raw.decode().split("\n") if l.startswith("data: ") and l != "data: [DONE]"]


mock, mock_port = start_mock(MOCK, WORK + "/mock.log")
try:
    # (a) and (b): bodies on
    p, port, data = serve("on", mock_port, True)
    plain_req, (st1, id1, raw1) = chat(port, 8)
    stream_req, (st2, id2, raw2) = chat(port, 8, stream=True)
    # ~1.5 MB of " more": past the cap, plain and streamed
    _, (st3, id3, raw3) = chat(port, 300000)
    _, (st4, id4, raw4) = chat(port, 12000, stream=True)
    check("on_requests_ok", (st1, st2, st3, st4) == (200, 200, 200, 200) and len(raw3) > CAP and len(raw4) > CAP,
          "%s, %d / %d bytes" % ((st1, st2, st3, st4), len(raw3), len(raw4)))
    lines = invocations(data, {id1, id2, id3, id4})
    check("on_all_logged", len(lines) == 4, "%d of 4" % len(lines))

    e = lines.get(id1, {})
    out = e.get("output", {})
    check("plain_output_json", out.get("outputBodyJson") == json.loads(raw1), json.dumps(out)[:400])
    check("plain_not_truncated", out.get("outputBodyTruncated") is False and out.get("outputBodyBytes") == len(raw1),
          json.dumps(out)[:400])
    check("plain_input_json", e.get("input", {}).get("inputBodyJson") == plain_req, json.dumps(e.get("input"))[:400])

    e = lines.get(id2, {})
    out = e.get("output", {})
    events = sse_events(raw2)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c["choices"])
    check("stream_chunks", out.get("outputBodyJson") == events, json.dumps(out)[:400])
    check("stream_text", out.get("outputText") == text and text.startswith("hello from"), json.dumps(out)[:400])
    final = (out.get("outputBodyJson") or [{}])[-1].get("usage") or {}
    check("stream_final_usage", final == events[-1]["usage"] and final.get("completion_tokens", 0) > 0 and
          final["completion_tokens"] == out.get("outputTokenCount"), "%s vs %s" % (final, out.get("outputTokenCount")))
    check("stream_not_truncated", out.get("outputBodyTruncated") is False and out.get("outputBodyBytes") == len(raw2),
          json.dumps(out)[:400])
    check("stream_input_json", e.get("input", {}).get("inputBodyJson") == stream_req)

    out = lines.get(id3, {}).get("output", {})
    kept = out.get("outputBodyText", "")
    check("big_plain_truncated", out.get("outputBodyTruncated") is True and out.get("outputBodyBytes") == len(raw3) and
          "outputBodyJson" not in out, json.dumps({k: v for k, v in out.items() if k != "outputBodyText"}))
    check("big_plain_kept_prefix", len(kept.encode()) == CAP and raw3.decode().startswith(kept), "%d bytes" % len(kept))

    out = lines.get(id4, {}).get("output", {})
    chunks = out.get("outputBodyJson") or []
    all_events = sse_events(raw4)
    check("big_stream_truncated", out.get("outputBodyTruncated") is True and out.get("outputBodyBytes") == len(raw4),
          json.dumps({k: v for k, v in out.items() if k != "outputBodyJson"})[:400])
    check("big_stream_whole_events", 0 < len(chunks) < len(all_events) and chunks == all_events[:len(chunks)],
          "%d of %d" % (len(chunks), len(all_events)))
    line_bytes = len(json.dumps(lines.get(id4, {})))
    check("big_stream_line_bounded", line_bytes < 3 * CAP, "%d bytes" % line_bytes)
    stop(p)

    # (c) bodies off
    p, port, data = serve("off", mock_port, False)
    _, (st5, id5, raw5) = chat(port, 8)
    _, (st6, id6, raw6) = chat(port, 8, stream=True)
    lines = invocations(data, {id5, id6})
    check("off_logged", (st5, st6) == (200, 200) and len(lines) == 2, "%s %d" % ((st5, st6), len(lines)))
    body_keys = [k for e in lines.values() for part in ("input", "output") for k in e.get(part, {})
                 if k not in ("inputTokenCount", "outputTokenCount")]
    check("off_no_bodies", body_keys == [], str(body_keys))
    stop(p)
finally:
    stop_all()
EOF
