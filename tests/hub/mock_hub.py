#!/usr/bin/python3
"""A Hugging Face hub on loopback for tests/hub/test_pull.sh.

Speaks the part of the hub protocol `basalt pull` uses:
  GET /api/models/ORG/NAME/revision/REV[?blobs=true]  -> {"sha", "siblings": [...]}
  GET /ORG/NAME/resolve/REV/PATH  -> the file (small files), or a 302 to the
      "CDN" for LFS files, with X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size
  GET /cdn/SHA256                 -> LFS bytes, honouring "Range: bytes=N-"
The CDN is addressed as http://localhost:PORT while the hub is 127.0.0.1:PORT,
so a client that leaks Authorization across hosts is caught in the log.

Each repo demonstrates one behaviour (see REPOS); --repo-dir adds one more
from a directory.  Every request is logged as
one JSON line to --log.  --export DIR writes each repo's files at its main
commit to DIR/ORG/NAME/PATH so the test can compare what was pulled.
Prints the port on stdout, then serves until killed.
"""
import argparse
import hashlib
import json
import os
import random
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "hf_secret"


def data(seed, n):
    return random.Random(seed).randbytes(n)


def commit_id(name):
    return hashlib.sha1(name.encode()).hexdigest()


def git_blob_id(content):
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


# repo -> {"revs": {rev: commit}, "files": {commit: {path: (bytes, lfs)}}, flags}
REPOS = {}


def add_repo(repo, files, revs=None, **flags):
    revs = revs or {"main": files}
    entry = {"revs": {}, "files": {}, **flags}
    for rev, fs in revs.items():
        c = commit_id(repo + "@" + rev)
        entry["revs"][rev] = c
        entry["revs"][c] = c
        entry["files"][c] = fs
    REPOS[repo] = entry


def build_repos():
    weights = data(1, 200_000)
    add_repo("acme/tiny", None, revs={
        "main": {
            "config.json": (b'{"model_type": "llama", "hidden_size": 8}\n', False),
            "tokenizer.json": (b'{"version": "1.0", "model": {"type": "BPE"}}\n', False),
            "model.safetensors": (weights, True),
            "pytorch_model.bin": (data(2, 5000), True),
            "README.md": (b"# tiny\n", False),
            "original/consolidated.00.pth": (data(3, 3000), True),
            "onnx/model.onnx": (data(4, 3000), True),
        },
        "v1": {
            "config.json": (b'{"model_type": "llama", "hidden_size": 8, "v": 1}\n', False),
            "model.safetensors": (weights, True),
        },
    })
    add_repo("acme/flaky", {"config.json": (b"{}\n", False),
                            "model.safetensors": (data(5, 300_000), True)}, drop_first=True)
    add_repo("acme/norange", {"model.safetensors": (data(6, 300_000), True)},
             drop_first=True, ignore_range=True)
    add_repo("acme/badsum", {"config.json": (b'{"a": 1}\n', False),
                             "model.safetensors": (data(7, 50_000), True)}, bad_sha=True)
    add_repo("acme/gated", {"config.json": (b'{"gated": true}\n', False),
                            "model.safetensors": (data(8, 40_000), True)}, gated=True)
    add_repo("acme/ggufs", {"README.md": (b"# ggufs\n", False),
                            "m.Q4_K_M.gguf": (data(9, 30_000), True),
                            "m.Q8_0.gguf": (data(10, 60_000), True)})
    add_repo("acme/evil", {"config.json": (b"{}\n", False), "../x": (b"owned\n", False)})
    add_repo("acme/busy", {"config.json": (b'{"busy": 1}\n', False)}, fail_first_api=True)


class State:
    lock = threading.Lock()
    log_path = None
    cdn = {}       # sha256 -> (bytes, repo flags)
    counts = {}    # key -> times seen


def count(key):
    with State.lock:
        State.counts[key] = State.counts.get(key, 0) + 1
        return State.counts[key]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def record(self):
        entry = {"method": self.command, "path": self.path,
                 "host": self.headers.get("Host", ""),
                 "range": self.headers.get("Range", ""),
                 "auth": self.headers.get("Authorization", "")}
        with State.lock, open(State.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def reply(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, code, error_code, message):
        body = json.dumps({"error": message}).encode()
        self.reply(code, body, {"Content-Type": "application/json",
                                "X-Error-Code": error_code, "X-Error-Message": message})

    def do_GET(self):
        self.record()
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
            return self.api("/".join(parts[2:4]), "/".join(parts[5:]))
        if parts[:1] == ["cdn"] and len(parts) == 2:
            return self.cdn(parts[1])
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        self.error(404, "EntryNotFound", "no route")

    def find(self, repo, rev, gate=False):
        """(entry, commit) or None after replying with the hub's error.  Like
        the real hub, a gated repo's file list is public; its files are not."""
        entry = REPOS.get(repo)
        if entry is None:
            self.error(404, "RepoNotFound", "Repository not found")
            return None
        if gate and entry.get("gated") and self.headers.get("Authorization") != "Bearer " + TOKEN:
            self.error(401, "GatedRepo", "Access to model %s is restricted" % repo)
            return None
        commit = entry["revs"].get(rev)
        if commit is None:
            self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            return None
        return entry, commit

    def api(self, repo, rev):
        if REPOS.get(repo, {}).get("fail_first_api") and count("api " + repo) == 1:
            return self.error(503, "", "try again")
        found = self.find(repo, rev)
        if not found:
            return
        entry, commit = found
        siblings = []
        for path, (content, lfs) in entry["files"][commit].items():
            sib = {"rfilename": path, "size": len(content), "blobId": git_blob_id(content)}
            if lfs:
                sha = hashlib.sha256(content).hexdigest()
                if entry.get("bad_sha"):
                    sha = hashlib.sha256(b"something else").hexdigest()
                sib["lfs"] = {"sha256": sha, "size": len(content), "pointerSize": 134}
            siblings.append(sib)
        body = json.dumps({"id": repo, "sha": commit, "siblings": siblings}).encode()
        self.reply(200, body, {"Content-Type": "application/json"})

    def resolve(self, repo, rev, path):
        found = self.find(repo, rev, gate=True)
        if not found:
            return
        entry, commit = found
        f = entry["files"][commit].get(path)
        if f is None:
            return self.error(404, "EntryNotFound", "Entry not found")
        content, lfs = f
        headers = {"X-Repo-Commit": commit, "ETag": '"%s"' % git_blob_id(content)}
        if not lfs:
            return self.reply(200, content, headers)
        sha = hashlib.sha256(content).hexdigest()
        with State.lock:
            State.cdn[sha] = (content, entry)
        port = self.server.server_address[1]
        headers.update({"X-Linked-Etag": '"%s"' % sha, "X-Linked-Size": str(len(content)),
                        "Location": "http://localhost:%d/cdn/%s" % (port, sha)})
        self.reply(302, b"", headers)

    def cdn(self, sha):
        with State.lock:
            found = State.cdn.get(sha)
        if not found:
            return self.reply(404)
        content, entry = found
        n = count("cdn " + sha)
        rng = self.headers.get("Range", "")
        start = 0
        if rng and not entry.get("ignore_range"):
            if not rng.startswith("bytes=") or not rng[6:].endswith("-"):
                return self.reply(416)
            start = int(rng[6:-1])
            if start >= len(content):
                return self.reply(416, b"", {"Content-Range": "bytes */%d" % len(content)})
        body = content[start:]
        if start:
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(content) - 1, len(content)))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if entry.get("drop_first") and n == 1:
            # Half the bytes, then the connection dies mid-body.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)


def export(dest):
    for repo, entry in REPOS.items():
        for path, (content, _) in entry["files"][entry["revs"]["main"]].items():
            out = os.path.normpath(os.path.join(dest, repo, path))
            if not out.startswith(os.path.normpath(dest) + os.sep + repo):
                continue  # the malicious names stay out of the export too
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(content)
    with open(os.path.join(dest, "commits.json"), "w") as f:
        json.dump({repo: e["revs"] for repo, e in REPOS.items()}, f)


def add_dir_repo(arg):
    """ORG/NAME=DIR: a repo holding DIR's files (weights as LFS), so a real
    model can be pulled and then served."""
    repo, path = arg.split("=", 1)
    files = {}
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), "rb") as f:
            files[name] = (f.read(), name.endswith(".safetensors"))
    add_repo(repo, files)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--export")
    ap.add_argument("--repo-dir", action="append", default=[], metavar="ORG/NAME=DIR")
    args = ap.parse_args()
    build_repos()
    for arg in args.repo_dir:
        add_dir_repo(arg)
    if args.export:
        export(args.export)
    State.log_path = args.log
    open(args.log, "w").close()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
