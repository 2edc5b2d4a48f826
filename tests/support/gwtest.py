"""tests/support/gwtest.py -- the helpers shared by the Python programs of
the gateway shell tests (tests/gateway/test_*.sh), standard library only.
A test's embedded program imports it with
    sys.path.insert(0, os.path.join(os.getcwd(), "tests", "support"))
    from gwtest import *
(the scripts run from the repository root, as tests/run.sh runs them).

  check(name, ok, why="")     prints "PASS name" or "FAIL name: why" (the
                              lines tests/run.sh counts) and flushes.
  procs                       the processes start() spawned and stop() has
                              not ended; stop_all() ends them (call it in a
                              finally: so nothing outlives the test).
  start(args, log, pattern)   spawns args with stdout+stderr appended to log
                              and waits (300 x 50 ms) until the regular
                              expression pattern matches what this start
                              appended (a restart appends to the same log);
                              returns (process, int(group 1)), usually the
                              port.  Exits the program with a FAIL line and
                              the log's tail if the process dies or never
                              says it.
  start_mock(mock, log, name=None)
                              tests/gateway/mock_upstream on a free port
                              (--name NAME if given): (process, port).
  start_serve(bin, cfg, data, log, extra=())
                              `basalt serve --config cfg --port 0 [extra]
                              --data data`: (process, port).
  stop(p)                     SIGTERM, waits (30 s), forgets it.
  stop_all(graceful=False)    every process left: SIGTERM and wait
                              (graceful) or SIGKILL and wait.
  req(port, method, path, body=None, key=None, timeout=60, raw=False)
                              one HTTP request to 127.0.0.1:port, body sent
                              as JSON, key as "Authorization: Bearer";
                              returns (status, {lower-case header: value},
                              payload): the parsed JSON when the response
                              says JSON (and has a body), else the raw bytes
                              (always the bytes with raw=True).
  url_port(url)               the port of "http://host:port[/]".
  parallel(n, fn, workers=32) [fn(0) .. fn(n-1)] run on a thread pool.
  cli_admin_key(bin, data, store=None)
                              `basalt keys create --name admin --scopes
                              admin --data data [--store store]`: (secret,
                              id).
  make_key(port, admin, name, scopes=("inference",), budget_usd=None,
           budget_period="day", **fields)
                              POST /v1/admin/keys with the admin key; the
                              budget fields only when budget_usd is given,
                              any other key field (rpm, tpm, owner ...) as a
                              keyword; asserts 200; returns (secret, id).
  key_usage(port, admin, key_id, requests)
                              the key's GET /v1/admin/usage?group_by=key row
                              once it counts `requests` (the usage writer
                              flushes on a timer; 100 x 0.1 s), else the
                              last row seen ({} if none).
  invocations(data, ids, tries=100)
                              {requestId: record} of the invocation log
                              (data/logs/*.jsonl) records of those request
                              ids, polled (tries x 0.1 s; the writer is
                              asynchronous) until all are in.
  invocation(data, rid)       the one record of rid, {} if none.
  mock_faults(mock_port, steps=None)
                              sets the mock upstream's fault steps (POST
                              /mock/faults); None clears them (DELETE).
  fresh_minute(latest=40)     sleeps until the UTC minute's second is at most
                              `latest`, so that a fixed rate-limit window
                              does not roll over mid-check.
  priced_config(path, mock_port, price_in, price_out, extra="")
                              writes a gateway config: the provider "mock"
                              at the mock upstream, the model "priced"
                              (upstream model "m") at those USD per million
                              tokens, usage flushed every 0.2 s, then extra.
"""
import glob
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

__all__ = ["check", "procs", "start", "start_mock", "start_serve", "stop", "stop_all", "req", "url_port", "parallel",
           "cli_admin_key", "make_key", "key_usage", "invocations", "invocation", "mock_faults", "fresh_minute",
           "priced_config"]
procs = []


def check(name, ok, why=""):
    print(("PASS %s" % name) if ok else ("FAIL %s: %s" % (name, why)))
    sys.stdout.flush()


def start(args, log, pattern):
    f = open(log, "a")
    p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT)
    procs.append(p)
    seen = os.path.getsize(log)
    for _ in range(300):
        m = re.search(pattern, open(log).read()[seen:])  # a restart appends to the log
        if m and p.poll() is None:
            return p, int(m.group(1))
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("FAIL start %s: %s" % (args[:2], open(log).read()[-2000:]))


def start_mock(mock, log, name=None):
    return start([mock, "--port", "0"] + (["--name", name] if name else []), log, r"listening on (\d+)")


def start_serve(bin, cfg, data, log, extra=()):
    return start([bin, "serve", "--config", cfg, "--port", "0"] + list(extra) + ["--data", data], log,
                 r"listening on http://[^:]+:(\d+)")


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    procs.remove(p)


def stop_all(graceful=False):
    for p in list(procs):
        if graceful:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        else:
            p.kill()
            p.wait()
        procs.remove(p)


def req(port, method, path, body=None, key=None, timeout=60, raw=False):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + key
    c.request(method, path, json.dumps(body) if body is not None else None, h)
    r = c.getresponse()
    data = r.read()
    c.close()
    ctype = r.getheader("Content-Type") or ""
    payload = json.loads(data) if not raw and data and "json" in ctype else data
    return r.status, {k.lower(): v for k, v in r.getheaders()}, payload


def url_port(url):
    return int(url.rstrip("/").rsplit(":", 1)[1])


def parallel(n, fn, workers=32):
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, range(n)))


def cli_admin_key(bin, data, store=None):
    args = [bin, "keys", "create", "--name", "admin", "--scopes", "admin"]
    args += (["--store", store] if store else []) + ["--data", data]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    return out[0], json.loads(out[1])["id"]


def make_key(port, admin, name, scopes=("inference",), budget_usd=None, budget_period="day", **fields):
    body = {"name": name, "scopes": list(scopes)}
    if budget_usd is not None:
        body.update(budget_usd=budget_usd, budget_period=budget_period)
    body.update(fields)
    st, _, j = req(port, "POST", "/v1/admin/keys", body, admin)
    assert st == 200, j
    return j["secret"], j["id"]


def key_usage(port, admin, key_id, requests):
    """The key's usage row once it counts `requests` (the writer flushes on a timer)."""
    for _ in range(100):
        st, _, j = req(port, "GET", "/v1/admin/usage?group_by=key&key_id=" + key_id, None, admin)
        if st == 200 and j["data"] and j["data"][0]["requests"] >= requests:
            return j["data"][0]
        time.sleep(0.1)
    return j["data"][0] if j.get("data") else {}


def invocations(data, ids, tries=100):
    """The invocation log records of the request ids (the writer is async)."""
    found = {}
    for _ in range(tries):
        for f in glob.glob(data + "/logs/*.jsonl"):
            for text in open(f):
                e = json.loads(text)
                if e.get("requestId") in ids:
                    found[e.get("requestId")] = e
        if len(found) == len(ids):
            break
        time.sleep(0.1)
    return found


def invocation(data, rid):
    return invocations(data, {rid}).get(rid, {})


def mock_faults(mock_port, steps=None):
    """Sets the mock's fault steps; None clears them."""
    c = http.client.HTTPConnection("127.0.0.1", mock_port, timeout=10)
    c.request("POST" if steps is not None else "DELETE", "/mock/faults", json.dumps(steps) if steps else None)
    c.getresponse().read()
    c.close()


def fresh_minute(latest=40):
    # The rate-limit windows are fixed minutes: do not straddle one.
    while time.gmtime().tm_sec > latest:
        time.sleep(0.5)


def priced_config(path, mock_port, price_in, price_out, extra=""):
    open(path, "w").write(f"""
providers:
  - {{name: mock, base_url: "http://127.0.0.1:{mock_port}/v1"}}
models:
  - {{name: priced, provider: mock, model: m, price: {{input_per_mtok: {price_in}, output_per_mtok: {price_out}}}}}
usage: {{flush_s: 0.2}}
{extra}""")
