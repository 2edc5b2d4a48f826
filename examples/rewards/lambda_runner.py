"""Run an AWS Lambda Python reward handler, unchanged, for basalt.

  python3 lambda_runner.py HANDLER.py [--handler NAME] --http PORT
      serve it over HTTP on 127.0.0.1:PORT (0 = any free port; the chosen
      port is printed as "listening on http://127.0.0.1:PORT"): every POST
      body is the event, the handler's return value the JSON answer
      (a basalt {"type": "http"} grader, or a BASALT_LAMBDA_<NAME>_URL).
  python3 lambda_runner.py HANDLER.py [--handler NAME]
      command mode: read one event from stdin, write the answer to stdout
      (a basalt {"type": "command"} grader).

The handler is called as handler(event, context) with a small stand-in
for the Lambda context (function_name, aws_request_id,
get_remaining_time_in_millis).  A handler exception is an HTTP 500 (with
the traceback on stderr) or a non-zero exit, which basalt counts as a
failed batch, not as a zero reward.
"""
import argparse
import importlib.util
import json
import os
import sys
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Context:
    def __init__(self, name, timeout_s=900):
        self.function_name = name
        self.function_version = "$LATEST"
        self.aws_request_id = str(uuid.uuid4())
        self.memory_limit_in_mb = 512
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load(path, name):
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name), module.__name__


def serve(handler, fn_name, port):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            try:
                event = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                body, code = json.dumps(handler(event, Context(fn_name))).encode(), 200
            except Exception:
                traceback.print_exc()
                body, code = b'{"errorMessage":"handler failed"}', 500
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module", help="path of the handler's .py file")
    ap.add_argument("--handler", default="lambda_handler")
    ap.add_argument("--http", type=int, metavar="PORT")
    args = ap.parse_args()
    handler, fn_name = load(args.module, args.handler)
    if args.http is not None:
        serve(handler, fn_name, args.http)
        return
    json.dump(handler(json.load(sys.stdin), Context(fn_name)), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
