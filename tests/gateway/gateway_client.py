#!/usr/bin/python3
"""tests/gateway/gateway_client.py BASALT_BIN MOCK_BIN WORKDIR -- the gateway
end to end with real processes on loopback: three fault-injecting mock
upstreams, a second basalt as an OpenAI-compatible upstream, and the basalt
under test with a generated config (a tiny local model included).  Prints
PASS/FAIL lines."""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

BIN, MOCK, WORK = sys.argv[1:4]
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server"))
sys.path.insert(0, os.path.join(HERE, "..", "oracle"))
SECRET = "sk-test-SECRET-4f9a1c"
procs = []
failed = [0]


def report(name, ok, why=""):
    if ok:
        print("PASS " + name)
    else:
        failed[0] += 1
        print("FAIL %s: %s" % (name, why))
    sys.stdout.flush()


def start(args, log, pattern):
    f = open(log, "w")
    p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, GW_KEY=SECRET))
    procs.append(p)
    for _ in range(600):
        text = open(log).read()
        m = re.search(pattern, text)
        if m:
            return p, int(m.group(1))
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("FAIL start: %s: %s" % (args[0], open(log).read()[-2000:]))


def req(port, method, path, body=None, headers=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body) if isinstance(body, (dict, list)) else body
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, data, h)
    r = c.getresponse()
    raw = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, raw


def chat(port, model, headers=None, **kw):
    body = {"model": model, "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 4}
    body.update(kw)
    return req(port, "POST", "/v1/chat/completions", body, headers)


def faults(port, steps):
    req(port, "DELETE", "/mock/faults")
    if steps is not None:
        req(port, "POST", "/mock/faults", steps)


def stats(port):
    return json.loads(req(port, "GET", "/mock/stats")[2])


def served_by(raw):
    m = re.search(r"hello from (\w+)", raw.decode(errors="replace"))
    return m.group(1) if m else None


def parallel(n, workers, fn):
    out = [None] * n
    idx = iter(range(n))
    lock = threading.Lock()

    def run():
        while True:
            with lock:
                i = next(idx, None)
            if i is None:
                return
            out[i] = fn(i)
    ts = [threading.Thread(target=run) for _ in range(workers)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return out


def main():
    import serve_client
    tiny = os.path.join(WORK, "tiny")
    serve_client.make_model(tiny)
    ma, pa = start([MOCK, "--port", "0", "--name", "a"], WORK + "/a.log", r"listening on (\d+)")
    mb, pb = start([MOCK, "--port", "0", "--name", "b"], WORK + "/b.log", r"listening on (\d+)")
    ms, ps = start([MOCK, "--port", "0", "--name", "s"], WORK + "/s.log", r"listening on (\d+)")
    up, pu = start([BIN, "serve", "--random", "--port", "0", "--data", WORK + "/up-data"], WORK + "/up.log",
                   r"listening on http://[^:]+:(\d+)")
    cfg = WORK + "/gw.yaml"

    def write_cfg(w_a=90, w_b=10, extra=""):
        open(cfg, "w").write(f"""
providers:
  - {{name: pa, base_url: "http://127.0.0.1:{pa}/v1", api_key_env: GW_KEY}}
  - {{name: pa-short, base_url: "http://127.0.0.1:{pa}/v1", timeout_s: 1}}
  - {{name: pb, base_url: "http://127.0.0.1:{pb}/v1"}}
  - {{name: ps, base_url: "http://127.0.0.1:{ps}/v1"}}
  - {{name: pu, base_url: "http://127.0.0.1:{pu}/v1"}}
models:
  - {{name: local-tiny, path: {tiny}}}
  - {{name: remote-a, provider: pa, model: gpt-4o-mini, price: {{input_per_mtok: 0.15, output_per_mtok: 0.6}}}}
  - {{name: remote-b, provider: pb, model: model-b}}
  - {{name: remote-s, provider: ps, model: model-s}}
  - {{name: remote-c, provider: pb, model: model-c}}
  - {{name: a-short, provider: pa-short, model: gpt-short}}
  - {{name: other-basalt, provider: pu, model: basalt-demo-random}}
retry: {{max_retries: 0, backoff_base_s: 0.01}}
routes:
  - name: canary
    targets: [{{model: local-tiny, weight: 90}}, {{model: remote-a, weight: 10}}]
    fallbacks: [remote-a]
  - name: w
    targets: [{{model: remote-a, weight: {w_a}}}, {{model: remote-b, weight: {w_b}}}]
  - name: sticky-h
    targets: [{{model: remote-a, weight: 50}}, {{model: remote-b, weight: 50}}]
    sticky: {{header: x-session}}
  - name: sticky-u
    targets: [{{model: remote-a, weight: 50}}, {{model: remote-b, weight: 50}}]
    sticky: user
  - name: fb
    targets: [{{model: remote-a, weight: 1}}]
    fallbacks: [remote-b]
    context_window_fallbacks: [other-basalt]
    content_policy_fallbacks: [remote-s]
  - name: retry
    targets: [{{model: remote-a, weight: 1}}]
    retry: {{max_retries: 2}}
  - name: brk
    targets: [{{model: remote-c, weight: 1}}]
    fallbacks: [remote-s]
    breaker: {{min_requests: 3, failure_rate: 0.5, cooldown_s: 1}}
  - name: shadowed
    targets: [{{model: remote-a, weight: 1}}]
    shadow: [remote-s, local-tiny]
  - name: dark
    targets: [{{model: remote-a, weight: 100}}, {{model: remote-b, weight: 0}}]
{extra}""")
    write_cfg()
    gw, pg = start([BIN, "serve", "--config", cfg, "--port", "0", "--data", WORK + "/gw-data"], WORK + "/gw.log",
                   r"listening on http://[^:]+:(\d+)")

    # (a) weights: 1000 requests, chi-square against 90/10 (1 dof, p = 0.001: 10.83)
    got = parallel(1000, 8, lambda i: served_by(chat(pg, "w")[2]))
    na, nb = got.count("a"), got.count("b")
    chi2 = (na - 900) ** 2 / 900 + (nb - 100) ** 2 / 100
    report("weights 90/10 chi2=%.2f (a=%d b=%d)" % (chi2, na, nb), na + nb == 1000 and chi2 < 10.83)

    # (b) stickiness by header and by user
    ok = True
    for k in range(20):
        seen = {served_by(chat(pg, "sticky-h", {"x-session": "s%d" % k})[2]) for _ in range(4)}
        seen2 = {served_by(chat(pg, "sticky-u", user="u%d" % k)[2]) for _ in range(4)}
        ok = ok and len(seen) == 1 and len(seen2) == 1
    spread = {served_by(chat(pg, "sticky-u", user="u%d" % k)[2]) for k in range(20)}
    report("sticky by header and by user (both variants used: %s)" % sorted(spread), ok and spread == {"a", "b"})

    # (c) each fallback list
    faults(pa, [{"status": 500}])
    st, h, raw = chat(pg, "fb")
    report("generic fallback on 500", st == 200 and served_by(raw) == "b" and h.get("x-basalt-target") == "remote-b",
           "%d %s %s" % (st, h.get("x-basalt-target"), raw[:200]))
    faults(pa, [{"status": 400, "code": "context_length_exceeded"}])
    st, h, raw = chat(pg, "fb")
    report("context-window fallback to another basalt", st == 200 and h.get("x-basalt-target") == "other-basalt" and
           json.loads(raw)["model"] == "fb", "%d %s %s" % (st, h.get("x-basalt-target"), raw[:200]))
    faults(pa, [{"status": 400, "code": "content_filter"}])
    st, h, raw = chat(pg, "fb")
    report("content-policy fallback", st == 200 and served_by(raw) == "s", "%d %s" % (st, raw[:200]))
    faults(pa, [{"status": 400, "code": "invalid_value", "message": "bad temperature"}])
    st, h, raw = chat(pg, "fb")
    report("client error passes through, no fallback",
           st == 400 and json.loads(raw)["error"]["message"] == "bad temperature", "%d %s" % (st, raw[:200]))

    # (d) retry honoring Retry-After on the same target
    faults(pa, [{"status": 429, "retry_after": 1}])
    n0 = stats(pa)["requests"]
    t0 = time.time()
    st, h, raw = chat(pg, "retry")
    dt = time.time() - t0
    report("429 Retry-After 1: waited %.2fs, same target" % dt,
           st == 200 and served_by(raw) == "a" and 1.0 <= dt < 2.5 and stats(pa)["requests"] - n0 == 2,
           "%d %s" % (st, raw[:200]))

    # (e) breaker: open -> (fallback while open) -> half-open -> closed; remote-c
    # (on mock b) has no traffic before, so three failures are the window
    faults(pb, {"always": {"status": 500}})
    tg = [chat(pg, "brk")[1].get("x-basalt-target") for _ in range(3)]
    n_b = stats(pb)["requests"]
    st, h, raw = chat(pg, "brk")
    m = req(pg, "GET", "/metrics")[2].decode()
    report("breaker opens: fallback served, target skipped",
           h.get("x-basalt-target") == "remote-s" and stats(pb)["requests"] == n_b and
           'basalt_gateway_breaker_state{target="remote-c"} 2' in m, "%s %s" % (tg, h.get("x-basalt-target")))
    faults(pb, None)
    time.sleep(1.1)
    m = req(pg, "GET", "/metrics")[2].decode()
    half = 'basalt_gateway_breaker_state{target="remote-c"} 1' in m
    st, h, raw = chat(pg, "brk")
    m = req(pg, "GET", "/metrics")[2].decode()
    report("breaker half-open then closed on a probe success",
           half and h.get("x-basalt-target") == "remote-c" and 'basalt_gateway_breaker_state{target="remote-c"} 0' in m,
           "half=%s target=%s" % (half, h.get("x-basalt-target")))

    # (f) shadow delivery without delaying the primary
    faults(ps, [{"delay_ms": 2000}])
    n_s = stats(ps)["requests"]
    t0 = time.time()
    st, h, raw = chat(pg, "shadowed")
    dt = time.time() - t0
    time.sleep(2.3)
    log = open(WORK + "/gw.log").read()
    report("shadow: primary %.3fs, shadow mock got it, outcome logged" % dt,
           st == 200 and dt < 0.5 and stats(ps)["requests"] == n_s + 1 and
           '"shadow":"remote-s"' in log and '"shadow":"local-tiny"' in log and '"shadow":true' in log,
           "%d %.3f" % (st, dt))

    # (g) streaming passthrough byte for byte apart from the model field
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "stream me"}], "max_tokens": 8,
            "stream": True, "stream_options": {"include_usage": True}}
    faults(pa, [{"raw": True}])
    direct = req(pa, "POST", "/v1/chat/completions", body)[2]
    faults(pa, [{"raw": True}])
    body["model"] = "remote-a"
    st, h, via = req(pg, "POST", "/v1/chat/completions", body)
    report("stream relayed byte for byte (model rewritten)",
           st == 200 and len(direct) > 100 and via == direct.replace(b'"gpt-4o-mini"', b'"remote-a"'),
           "%r\n%r" % (direct[:300], via[:300]))

    # (h) hot reload without dropped requests; a bad config is rejected
    stop = threading.Event()
    bad = []

    def loop():
        while not stop.is_set():
            st, h, raw = chat(pg, "w")
            if st != 200:
                bad.append(st)
    ts = [threading.Thread(target=loop) for _ in range(4)]
    [t.start() for t in ts]
    write_cfg(0, 100)
    gw.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    after_hup = {served_by(chat(pg, "w")[2]) for _ in range(10)}
    write_cfg(100, 0)
    st1, _, _ = req(pg, "POST", "/v1/admin/reload")
    after_post = {served_by(chat(pg, "w")[2]) for _ in range(10)}
    good = open(cfg).read()
    open(cfg, "w").write(good.replace("routes:", "routes:\n  - name: broken\n    targets: [{model: nope, weight: 1}]"))
    st2, _, raw2 = req(pg, "POST", "/v1/admin/reload")
    still = {served_by(chat(pg, "w")[2]) for _ in range(10)}
    open(cfg, "w").write(good.replace(tiny, WORK + "/elsewhere"))
    st3, _, raw3 = req(pg, "POST", "/v1/admin/reload")
    stop.set()
    [t.join() for t in ts]
    open(cfg, "w").write(good)
    msg = json.loads(raw2)["error"]["message"] if st2 == 400 else ""
    report("hot reload: SIGHUP %s, POST %s, zero failed requests (%d)" % (after_hup, after_post, len(bad)),
           not bad and after_hup == {"b"} and after_post == {"a"} and st1 == 200)
    report("bad reload rejected naming file:line, old config serves",
           st2 == 400 and re.search(r"gw\.yaml:\d+", msg) and still == {"a"} and st3 == 400 and
           b"restart basalt" in raw3, "%d %s %s" % (st2, msg, raw3[:200]))

    # (j) weight-0 dark target only when pinned
    plain = {served_by(chat(pg, "dark")[2]) for _ in range(30)}
    st, h, raw = chat(pg, "dark", {"x-basalt-target": "remote-b"})
    report("dark target only with x-basalt-target", plain == {"a"} and served_by(raw) == "b")

    # (k) error translation: 500 with no fallback -> 502; a hang -> 504 after the provider timeout
    faults(pa, [{"status": 500}])
    st, h, raw = chat(pg, "remote-a")
    e = json.loads(raw).get("error", {})
    report("upstream 500 -> 502 OpenAI error", st == 502 and e.get("type") == "upstream_error" and
           h.get("x-basalt-target") == "remote-a", "%d %s" % (st, raw[:200]))
    faults(pa, [{"hang": True, "hang_ms": 3000}])
    t0 = time.time()
    st, h, raw = chat(pg, "a-short")
    dt = time.time() - t0
    report("hang -> 504 after the 1 s provider timeout (%.2fs)" % dt, st == 504 and 0.9 < dt < 2.5,
           "%d %s" % (st, raw[:200]))

    # (l) the canary example: local and remote targets, both answering under the route's name
    got = [chat(pg, "canary") for _ in range(30)]
    targets = {h.get("x-basalt-target") for st, h, raw in got if st == 200}
    st, h, raw = chat(pg, "canary", {"x-basalt-target": "local-tiny"})
    report("canary route: local and remote targets (%s)" % sorted(targets),
           all(g[0] == 200 for g in got) and targets <= {"local-tiny", "remote-a"} and "local-tiny" in targets and
           st == 200 and json.loads(raw)["choices"][0]["message"]["role"] == "assistant")
    overhead = [float(g[1].get("x-basalt-overhead-ms", "nan")) for g in got]
    report("x-basalt-overhead-ms on every response", all(0 <= o < 50 for o in overhead), str(overhead[:5]))

    # metrics and log line fields
    m = req(pg, "GET", "/metrics")[2].decode()
    want = ['basalt_gateway_requests_total{route="w",target="remote-a",status_class="2xx"}',
            'basalt_gateway_fallbacks_total{route="fb",from="remote-a",to="remote-b",class="server"} 1',
            'basalt_gateway_errors_total{route="retry",target="remote-a",class="rate_limited"} 1',
            'basalt_gateway_overhead_seconds_bucket{route="w",target="remote-a",le="1e-05"}',
            'basalt_gateway_cost_usd_total{route="w",target="remote-a"}']
    report("metrics per route and target", all(w in m for w in want), [w for w in want if w not in m])
    lines = [json.loads(x) for x in open(WORK + "/gw.log") if x.startswith("{") and '"route":"fb"' in x]
    report("log line has route, target, chain, overhead_ms, fallbacks_taken",
           any(x.get("fallbacks_taken") == 1 and len(x.get("chain", [])) == 2 and "overhead_ms" in x and
               x.get("target") == "remote-b" for x in lines))

    # (i) the provider key was sent but appears in no log, response or metrics
    faults(pa, None)
    chat(pg, "remote-a")
    sent = json.dumps(stats(pa)["last_headers"])
    everything = open(WORK + "/gw.log").read() + m + raw.decode(errors="replace")
    report("secret sent upstream, absent from logs/metrics/responses", SECRET in sent and SECRET not in everything)


try:
    main()
finally:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
sys.exit(1 if failed[0] else 0)
