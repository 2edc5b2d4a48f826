#!/bin/sh
# Budgets and cost end to end: `basalt serve --config` with one priced
# remote model on a mock upstream (whose usage counts are deterministic),
# keys with a daily budget_usd, and
#   (a) sequential requests until the budget refuses (429 budget_exceeded,
#       insufficient_quota, x-ratelimit-* and Retry-After up to the period's
#       end), refused exactly when spent + the request's reservation would
#       pass the budget; /v1/admin/usage's cost equals the sum of the
#       admitted responses' usage times the prices (to 1e-9);
#   (b) 200 parallel requests on a fresh key: admitted cost within the
#       budget (reserved at admission), exact final accounting;
#   (c) the request line and the invocation log carry each request's cost;
#   (d) config reloads, failed ones included, are in the audit log;
#   (e) a restart on the same data directory still enforces what was spent;
#   (f) with BASALT_TEST_PG_URL and BASALT_TEST_REDIS_URL, one budget
#       enforced jointly by two replicas.
. tests/support/lib.sh
MOCK=${BASALT_MOCK_UPSTREAM:-build/tests/gateway/mock_upstream}
if [ ! -x "$BIN" ] || [ ! -x "$MOCK" ]; then echo "SKIP budget: $BIN or $MOCK not built"; exit 0; fi
"$PY" - "$BIN" "$MOCK" "$tmp" <<'EOF'
import json, os, re, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "support"))
from gwtest import *

BIN, MOCK, WORK = sys.argv[1:4]
PG, REDIS = os.environ.get("BASALT_TEST_PG_URL"), os.environ.get("BASALT_TEST_REDIS_URL")
PRICE_IN, PRICE_OUT = 1000.0, 2000.0  # USD per million tokens: 0.001 / 0.002 per token
MESSAGES = [{"role": "user", "content": "hi there"}]
MAX_TOKENS = 4
# What admission reserves (docs/governance.md): one token per byte of the
# body's strings but the model ("user" + "hi there") plus 32 per message
# (+1), and max_tokens, at the model's price.
RESERVE = ((4 + 8 + 32 * 2) * PRICE_IN + MAX_TOKENS * PRICE_OUT) / 1e6


def chat(port, key):
    return req(port, "POST", "/v1/chat/completions",
               {"model": "priced", "messages": MESSAGES, "max_tokens": MAX_TOKENS}, key)


def cost(usage):
    return (usage["prompt_tokens"] * PRICE_IN + usage["completion_tokens"] * PRICE_OUT) / 1e6


def mkkey(port, admin, name, budget):
    # rpm/tpm far above the traffic, so every answer carries x-ratelimit-*.
    return make_key(port, admin, name, budget_usd=budget, rpm=10000, tpm=10000000)


def burst(ports, key, n):
    """n parallel chats spread over ports: (usages of the 200s, refusal codes)."""
    def one(i):
        st, _, j = chat(ports[i % len(ports)], key)
        return st, j
    res = parallel(n, one)
    ok = [j["usage"] for st, j in res if st == 200]
    refused = sorted({(st, j["error"]["code"]) for st, j in res if st != 200})
    return ok, refused


def single(mock_port):
    data, cfg, log = WORK + "/data", WORK + "/gw.yaml", WORK + "/serve.log"
    priced_config(cfg, mock_port, PRICE_IN, PRICE_OUT)
    admin, admin_id = cli_admin_key(BIN, data)
    p, port = start_serve(BIN, cfg, data, log)

    # (a) sequential until refused
    budget = 0.2
    key, key_id = mkkey(port, admin, "seq", budget)
    fresh_minute(45)
    spent, admitted, tokens, ids, refusal, over = 0.0, [], 0, [], None, []
    for _ in range(100):
        st, h, j = chat(port, key)
        if st != 200:
            refusal = (st, h, j)
            break
        if spent + RESERVE > budget + 1e-9:
            over.append(spent)
        spent += cost(j["usage"])
        tokens += j["usage"]["total_tokens"]
        admitted.append(j["usage"])
        ids.append((h.get("x-request-id"), cost(j["usage"])))
    check("seq_refused", refusal is not None and len(admitted) >= 2, "admitted %d" % len(admitted))
    check("seq_admitted_only_within_budget", not over, "admitted after spending %s" % over)
    st, h, j = refusal
    check("seq_429_budget_exceeded", st == 429 and j["error"]["code"] == "budget_exceeded" and
          j["error"]["type"] == "insufficient_quota", json.dumps(j))
    check("seq_refused_only_when_needed", spent + RESERVE > budget, "spent %.6f" % spent)
    check("seq_429_headers", h.get("x-ratelimit-limit-requests") == "10000" and
          h.get("x-ratelimit-remaining-requests") == str(10000 - len(admitted)) and
          h.get("x-ratelimit-limit-tokens") == "10000000" and
          h.get("x-ratelimit-remaining-tokens") == str(10000000 - tokens), json.dumps(h))
    # Retry-After: until the budget's period (the UTC day) ends.
    to_midnight = 86400 - int(time.time()) % 86400
    check("seq_retry_after_period_end", abs(int(h.get("retry-after", "0")) - to_midnight) <= 5,
          "%s vs %d" % (h.get("retry-after"), to_midnight))
    row = key_usage(port, admin, key_id, len(admitted) + 1)
    check("seq_usage_cost_exact", abs(row.get("cost_usd", -1) - spent) < 1e-9 and spent <= budget and
          row["prompt_tokens"] == sum(u["prompt_tokens"] for u in admitted) and
          row["completion_tokens"] == sum(u["completion_tokens"] for u in admitted),
          "usage %s, responses %.9f" % (row, spent))

    # (b) 200 parallel on a fresh key
    budget2 = 0.5
    key2, key2_id = mkkey(port, admin, "par", budget2)
    ok, refused = burst([port], key2, 200)
    spent2 = sum(cost(u) for u in ok)
    check("par_within_budget", 0 < spent2 <= budget2 + 1e-9 and refused == [(429, "budget_exceeded")],
          "spent %.6f of %.6f, refusals %s" % (spent2, budget2, refused))
    row = key_usage(port, admin, key2_id, 200)
    check("par_usage_exact", row.get("requests") == 200 and abs(row["cost_usd"] - spent2) < 1e-9 and
          row["requests"] - row["errors"] == len(ok), "usage %s, responses %.9f (%d ok)" % (row, spent2, len(ok)))
    # What is left decides the next request exactly.
    st, _, j = chat(port, key2)
    check("par_next_exact", (st == 200) == (spent2 + RESERVE <= budget2 + 1e-9), "%d after %.6f" % (st, spent2))
    if st == 200:
        spent2 += cost(j["usage"])

    # (c) cost on the request line and in the invocation log
    lines = [json.loads(m) for m in re.findall(r"\{.*\}", open(log).read()) if '"key_id"' in m]
    seq_lines = [l for l in lines if l.get("key_id") == key_id and "cost_usd" in l]
    check("log_line_cost", len(seq_lines) >= len(admitted) and
          abs(sum(l["cost_usd"] for l in seq_lines) - spent) < 1e-9, "%d lines" % len(seq_lines))
    inv = invocations(data, {rid for rid, _ in ids}, tries=50)
    check("invocation_log_cost", all(rid in inv and abs(inv[rid]["costUsd"] - c) < 1e-9 and
                                     inv[rid]["keyId"] == key_id for rid, c in ids),
          "%d of %d found" % (sum(1 for rid, _ in ids if rid in inv), len(ids)))

    # (d) reloads audited, a rejected one too
    st, _, j = req(port, "POST", "/v1/admin/reload", None, admin)
    check("reload_ok", st == 200 and j["generation"] == 2, json.dumps(j))
    good = open(cfg).read()
    open(cfg, "w").write("models:\n  - {name: broken, provider: nowhere, model: m}\n")
    st, _, j = req(port, "POST", "/v1/admin/reload", None, admin)
    check("reload_rejected", st == 400 and j["error"]["code"] == "invalid_config", json.dumps(j))
    open(cfg, "w").write(good)
    st, _, j = req(port, "GET", "/v1/admin/audit?limit=1000", None, admin)
    reloads = [e for e in j["data"] if e["action"] == "config.reload"]
    check("audit_reloads", len(reloads) == 2 and all(e["actor"] == admin_id and e["target"] == cfg
                                                     for e in reloads) and
          reloads[0]["details"] == {"generation": 2, "ok": True} and
          reloads[1]["details"]["generation"] == 2 and reloads[1]["details"]["ok"] is False and
          "nowhere" in reloads[1]["details"]["error"], json.dumps(reloads))

    # (e) a restart keeps what was spent
    stop(p)
    p, port = start_serve(BIN, cfg, data, log)
    st, _, j = chat(port, key)
    check("restart_still_refused", st == 429 and j["error"]["code"] == "budget_exceeded", "%d %s" % (st, j))
    st, _, j = chat(port, key2)
    check("restart_exact_left", (st == 200) == (spent2 + RESERVE <= budget2 + 1e-9), "%d after %.6f" % (st, spent2))
    stop(p)


def replicas(mock_port):
    if not PG or not REDIS:
        print("SKIP budget_replicas: BASALT_TEST_PG_URL / BASALT_TEST_REDIS_URL not set")
        return
    cfg = WORK + "/rep.yaml"
    priced_config(cfg, mock_port, PRICE_IN, PRICE_OUT, "store: %s\nratelimit: %s\n" % (PG, REDIS))
    admin, _ = cli_admin_key(BIN, WORK + "/cli", store=PG)
    ports = []
    for name in ("ra", "rb"):
        ports.append(start_serve(BIN, cfg, WORK + "/" + name, WORK + "/" + name + ".log")[1])
    budget = 0.4
    key, key_id = mkkey(ports[0], admin, "shared", budget)
    for _ in range(50):  # the other replica's key refresh
        if req(ports[1], "GET", "/v1/models", None, key)[0] == 200:
            break
        time.sleep(0.2)
    ok, refused = burst(ports, key, 200)
    spent = sum(cost(u) for u in ok)
    check("replicas_within_budget", 0 < spent <= budget + 1e-9 and refused == [(429, "budget_exceeded")],
          "spent %.6f of %.6f, refusals %s" % (spent, budget, refused))
    row = key_usage(ports[0], admin, key_id, 200)
    check("replicas_usage_exact", row.get("requests") == 200 and abs(row["cost_usd"] - spent) < 1e-9,
          "usage %s, responses %.9f" % (row, spent))
    st, _, _ = chat(ports[1], key)
    check("replicas_next_exact", (st == 200) == (spent + RESERVE <= budget + 1e-9), "%d after %.6f" % (st, spent))


try:
    mock = start_mock(MOCK, WORK + "/mock.log", name="m")[1]
    single(mock)
    replicas(mock)
finally:
    stop_all()
EOF
