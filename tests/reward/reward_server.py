"""Fault-injecting reward endpoint for tests/reward (Bedrock reward-Lambda
contract over HTTP).  The path picks the behaviour:

  /ok           score 1.0 when the assistant turn equals metadata.reference_answer, else 0.0
  /slow         sleep 3 s, then as /ok (a timeout for a short timeout_ms)
  /500          always HTTP 500
  /flaky        HTTP 503 on every odd-numbered request to /flaky, /ok otherwise
  /400          HTTP 400
  /badjson      a body that is not JSON
  /missing_id   drops the first result's id
  /wrong_count  one result too many
  /nan          aggregate_reward_score is a string for the first sample
  /echo_header  score = float(X-Reward-Scale header)

Prints "PORT <n>" on stdout once it listens on 127.0.0.1 (port 0 = any).
GET /count returns how many POSTs it has answered.
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"posts": 0, "flaky": 0}


def last_assistant(messages):
    for m in reversed(messages):
        if m.get("role") == "assistant":
            return m.get("content") or ""
    return ""


def score(sample):
    ref = sample.get("metadata", {}).get("reference_answer")
    return 1.0 if last_assistant(sample["messages"]).strip() == str(ref).strip() else 0.0


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(200, json.dumps({"posts": state["posts"]}))

    def do_POST(self):
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        state["posts"] += 1
        path = self.path
        if path == "/flaky":
            state["flaky"] += 1
            if state["flaky"] % 2 == 1:
                return self.reply(503, '{"error":"warming up"}')
        if path == "/slow":
            time.sleep(3)
        if path == "/500":
            return self.reply(500, '{"error":"boom"}')
        if path == "/400":
            return self.reply(400, '{"error":"bad request"}')
        if path == "/badjson":
            return self.reply(200, "this is not json")
        out = [{"id": s["id"], "aggregate_reward_score": score(s),
                "metrics_list": [{"name": "exact", "value": score(s), "type": "Reward"},
                                 {"name": "length", "value": len(last_assistant(s["messages"])), "type": "Metric"}]}
               for s in event]
        if path == "/echo_header":
            for o in out:
                o["aggregate_reward_score"] = float(self.headers.get("X-Reward-Scale", "-1"))
        if path == "/missing_id":
            del out[0]["id"]
        if path == "/wrong_count":
            out.append({"id": "extra", "aggregate_reward_score": 0.5})
        if path == "/nan":
            out[0]["aggregate_reward_score"] = "high"
        self.reply(200, json.dumps(out))


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("PORT", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
