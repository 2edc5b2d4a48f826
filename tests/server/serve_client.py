#!/usr/bin/python3
"""tests/server/serve_client.py BASALT_BIN WORKDIR -- integration tests of
`basalt serve`: starts the real server on a free loopback port with a tiny
random qwen2 model (byte-level tokenizer, a ChatML template with Hermes
tool-call markup) and talks HTTP to it with the standard library only.
Prints PASS/FAIL/SKIP lines."""
import base64
import http.client
import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "oracle"))

TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nYou may call tools:\n<tools>\n"
    "{%- for tool in tools %}\n{{ tool | tojson }}{%- endfor %}\n</tools>\n"
    "Reply with <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call><|im_end|>\n{%- endif %}"
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}")

results = {"fail": 0}


def report(name, ok, why=""):
    if ok:
        print("PASS " + name)
    else:
        results["fail"] += 1
        print("FAIL %s: %s" % (name, why))
    sys.stdout.flush()


def check(name, fn):
    try:
        why = fn()
        report(name, not why, why or "")
    except Exception as e:  # a failed assertion or a broken connection
        report(name, False, "%s: %s" % (type(e).__name__, e))


def make_model(out, max_pos=None):
    """The tiny chat model in directory out; max_pos raises its position
    limit (the oracle's 512) for prompts that carry tool definitions."""
    import torch
    import make_model as mm
    a = mm.ARCHS["qwen2"]
    gen = torch.Generator().manual_seed(7)
    w = mm.make_weights(a, gen)
    mm.write_hf(out, a, w, "F32", tokenizer=True)
    if max_pos:
        with open(os.path.join(out, "config.json")) as f:
            config = json.load(f)
        config["max_position_embeddings"] = max_pos
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(config, f)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"chat_template": TEMPLATE, "eos_token": "<|endoftext|>", "bos_token": None}, f)


def make_tool_model(out, template=None, tokens=("Sure. <tool_call>\n", "</tool_call>")):
    """The tiny model with a 2048-position limit and two added (non-special)
    tokens: 257 "Sure. <tool_call>\n", which straddles the Hermes trigger
    (text before it, a newline after it), and 258 "</tool_call>" (or a
    family's own template and trigger/closer tokens)."""
    make_model(out, max_pos=2048)
    if template:
        with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
            json.dump({"chat_template": template, "eos_token": "<|endoftext|>", "bos_token": None}, f)
    path = os.path.join(out, "tokenizer.json")
    with open(path) as f:
        tok = json.load(f)
    for i, text in zip((257, 258), tokens):
        tok["added_tokens"].append({"id": i, "content": text, "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": False})
    with open(path, "w") as f:
        json.dump(tok, f)


class Server:
    def __init__(self, binary, models, work, extra=(), log="serve.log"):
        """models: [(name, directory)]."""
        self.log_path = os.path.join(work, log)
        self.log = open(self.log_path, "w")
        args = [binary, "serve", "--port", "0", "--threads", "1", "--data", os.path.join(work, "data")]
        for name, path in models:
            args += ["--model", name + "=" + path]
        self.proc = subprocess.Popen(args + list(extra), stdout=self.log, stderr=subprocess.STDOUT)
        self.host = self.port = None
        deadline = time.time() + 60
        while time.time() < deadline and self.proc.poll() is None:
            m = re.search(r"listening on http://([0-9.]+):(\d+)", open(self.log_path).read())
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                return
            time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + open(self.log_path).read())

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def request(self, method, path, body=None, conn=None, raw=None):
        c = conn or self.conn()
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        text = r.read()
        if conn is None:
            c.close()
        ctype = r.getheader("Content-Type", "")
        parsed = json.loads(text) if ctype.startswith("application/json") else text.decode("utf-8", "replace")
        return r.status, parsed, r

    def named_events(self, path, body):
        """A Responses stream: [(event name, data)] and whether [DONE] came."""
        c = self.conn()
        c.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        events, done = [], False
        for block in r.read().decode("utf-8").split("\n\n"):
            lines = dict(l.split(": ", 1) for l in block.split("\n") if ": " in l)
            if lines.get("data") == "[DONE]":
                done = True
            elif "data" in lines:
                events.append((lines.get("event"), json.loads(lines["data"])))
        c.close()
        return r.status, events, done

    def stream(self, path, body):
        c = self.conn()
        c.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        events = []
        for block in r.read().decode("utf-8").split("\n\n"):
            if block.startswith("data: "):
                payload = block[6:]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
        c.close()
        return r.status, events


NO_EOG = {"2": -100, "3": -100, "256": -100}  # the random model must not end early
MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]


def main():
    binary, work = sys.argv[1], sys.argv[2]
    model_dir = os.path.join(work, "tiny")
    try:
        make_model(model_dir)
    except ImportError as e:
        print("SKIP serve: cannot build the test model (%s)" % e)
        return 0
    srv = Server(binary, [("tiny", model_dir)], work, ["--ctx", "512", "--parallel", "4", "--max-body", "1"])
    q = srv.request

    def health():
        st, body, r = q("GET", "/health")
        if st != 200 or body != {"status": "ok"}:
            return "got %d %r" % (st, body)
        if not (r.getheader("x-request-id") or "").startswith("req_"):
            return "no x-request-id"
    check("health", health)
    check("data_dir_created", lambda: None if os.path.isdir(os.path.join(work, "data")) else "missing")

    def models():
        st, body, _ = q("GET", "/v1/models")
        assert st == 200 and body["object"] == "list", body
        m = body["data"][0]
        assert m["id"] == "tiny" and m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"], m
        st, one, _ = q("GET", "/v1/models/tiny")
        assert st == 200 and one["id"] == "tiny", one
        st, err, _ = q("GET", "/v1/models/nope")
        assert st == 404 and err["error"]["code"] == "model_not_found" and "nope" in err["error"]["message"], err
    check("models_list_get_404", models)

    def tokenize():
        st, body, _ = q("POST", "/tokenize", {"model": "tiny", "prompt": "hello"})
        assert st == 200 and body["tokens"] == [104, 101, 108, 108, 111] and body["count"] == 5, body
        assert body["max_model_len"] == 512, body
        st, back, _ = q("POST", "/detokenize", {"model": "tiny", "tokens": body["tokens"]})
        assert st == 200 and back == {"prompt": "hello"}, back
    check("tokenize_detokenize_roundtrip", tokenize)

    st, tk, _ = q("POST", "/tokenize", {"model": "tiny", "messages": MSGS})
    n_prompt = tk.get("count", -1)
    chat_body = {"model": "tiny", "messages": MSGS, "max_tokens": 8, "temperature": 0, "logit_bias": NO_EOG}
    st, chat, r = q("POST", "/v1/chat/completions", chat_body)

    def chat_shape():
        assert st == 200, chat
        assert chat["id"].startswith("chatcmpl-") and chat["object"] == "chat.completion", chat
        assert isinstance(chat["created"], int) and chat["model"] == "tiny", chat
        c = chat["choices"][0]
        assert c["index"] == 0 and c["message"]["role"] == "assistant" and isinstance(c["message"]["content"], str), c
        assert c["finish_reason"] == "length" and c["logprobs"] is None, c
        u = chat["usage"]
        assert u["completion_tokens"] == 8 and u["prompt_tokens"] == n_prompt > 0, (u, n_prompt)
        assert u["total_tokens"] == u["prompt_tokens"] + 8 and "cached_tokens" in u["prompt_tokens_details"], u
        assert r.getheader("x-request-id"), "no request id"
    check("chat_nonstreaming_shape_usage", chat_shape)

    def chat_stream():
        body = dict(chat_body, stream=True, stream_options={"include_usage": True})
        st, ev = srv.stream("/v1/chat/completions", body)
        assert st == 200 and ev[-1] == "[DONE]", ev[-2:]
        chunks = ev[:-1]
        assert all(x["object"] == "chat.completion.chunk" and x["id"] == chunks[0]["id"] for x in chunks)
        assert chunks[0]["choices"][0]["delta"].get("role") == "assistant", chunks[0]
        assert not any("role" in x["choices"][0]["delta"] for x in chunks[1:] if x["choices"]), "role repeated"
        text = "".join(x["choices"][0]["delta"].get("content") or "" for x in chunks if x["choices"])
        assert text == chat["choices"][0]["message"]["content"], (text, chat["choices"][0]["message"]["content"])
        fin = [x for x in chunks if x["choices"] and x["choices"][0]["finish_reason"]]
        assert len(fin) == 1 and fin[0]["choices"][0]["finish_reason"] == "length", fin
        last = chunks[-1]
        assert last["choices"] == [] and last["usage"]["completion_tokens"] == 8, last
        assert last["usage"]["prompt_tokens"] == n_prompt, last
    check("chat_streaming_matches", chat_stream)

    def seeded():
        body = dict(chat_body, temperature=1.0, seed=1234, max_tokens=12)
        a = q("POST", "/v1/chat/completions", body)[1]["choices"][0]["message"]["content"]
        b = q("POST", "/v1/chat/completions", body)[1]["choices"][0]["message"]["content"]
        assert a == b, (a, b)
    check("seed_determinism", seeded)

    def n2():
        st, body, _ = q("POST", "/v1/chat/completions", dict(chat_body, n=2, temperature=1.0, seed=3))
        assert st == 200 and [c["index"] for c in body["choices"]] == [0, 1], body
        assert body["usage"]["completion_tokens"] == 16, body["usage"]
    check("n_2_choices", n2)

    def stop():
        full = q("POST", "/v1/chat/completions", dict(chat_body, max_tokens=16))[1]["choices"][0]["message"]["content"]
        assert len(full) >= 6, full
        s = full[3:5]
        st, body, _ = q("POST", "/v1/chat/completions", dict(chat_body, max_tokens=16, stop=[s, "\u2603never"]))
        c = body["choices"][0]
        want = full[:full.find(s)]
        assert c["message"]["content"] == want and c["finish_reason"] == "stop", (c, want)
        st, ev = srv.stream("/v1/chat/completions", dict(chat_body, max_tokens=16, stop=s, stream=True))
        text = "".join(x["choices"][0]["delta"].get("content") or "" for x in ev[:-1] if x["choices"])
        assert text == want, (text, want)
    check("stop_strings", stop)

    def bad_params():
        st, e, _ = q("POST", "/v1/chat/completions", dict(chat_body, temperature="hot"))
        assert st == 400 and e["error"]["param"] == "temperature" and e["error"]["type"] == "invalid_request_error", e
        st, e, _ = q("POST", "/v1/chat/completions", {"model": "tiny"})
        assert st == 400 and e["error"]["param"] == "messages", e
        st, e, _ = q("POST", "/v1/chat/completions", dict(chat_body, messages=[{"role": "user", "content": 5}]))
        assert st == 400 and e["error"]["param"] == "messages[0].content", e
        c = srv.conn()
        st, e, _ = q("POST", "/v1/chat/completions", conn=c, raw=b'{"model": "tiny", "messages": [')
        assert st == 400 and "parse" in e["error"]["message"], e
        st, h, _ = q("GET", "/health", conn=c)  # same keep-alive connection still serves
        assert st == 200, h
        c.close()
    check("400_names_param_and_keeps_connection", bad_params)

    def not_found():
        st, e, _ = q("POST", "/v1/chat/completions", dict(chat_body, model="gpt-9"))
        assert st == 404 and e["error"]["code"] == "model_not_found", e
        st, e, r = q("GET", "/v1/chat/completions")
        assert st == 405 and "POST" in (r.getheader("Allow") or "") and "error" in e, e
        st, e, _ = q("GET", "/v1/nothing")
        assert st == 404 and e["error"]["message"], e
    check("404_405", not_found)

    def too_large():
        c = srv.conn()
        big = json.dumps({"model": "tiny", "prompt": "x" * (1 << 21)}).encode()
        st, e, _ = q("POST", "/v1/completions", conn=c, raw=big)
        assert st == 413 and e["error"]["message"], e
        st, _, _ = q("GET", "/health", conn=c)
        assert st == 200
        c.close()
    check("413_body_limit", too_large)

    def url_header_limits():
        st, e, _ = q("GET", "/v1/models?q=" + "x" * 9000)
        assert st == 414 and e["error"]["code"] == "url_too_long", e
        c = srv.conn()
        c.request("GET", "/v1/models", headers={"X-Big-%d" % i: "y" * 4000 for i in range(10)})
        r = c.getresponse()
        e = json.loads(r.read())
        assert r.status == 431 and e["error"]["code"] == "request_header_fields_too_large", e
        c.close()
        assert q("GET", "/v1/models")[0] == 200
    check("414_431_openai_errors", url_header_limits)

    def too_long():
        st, e, _ = q("POST", "/v1/chat/completions", dict(chat_body, max_tokens=1000))
        assert st == 400 and e["error"]["code"] == "context_length_exceeded", e
        assert "512" in e["error"]["message"] and str(1000 + n_prompt) in e["error"]["message"], e
    check("prompt_too_long_400", too_long)

    def completions():
        body = {"model": "tiny", "prompt": "abc", "max_tokens": 4, "temperature": 0, "echo": True,
                "logit_bias": NO_EOG, "logprobs": 2}
        st, a, _ = q("POST", "/v1/completions", body)
        assert st == 200 and a["object"] == "text_completion" and a["id"].startswith("cmpl-"), a
        ca = a["choices"][0]
        assert ca["text"].startswith("abc") and ca["finish_reason"] == "length", ca
        lp = ca["logprobs"]
        assert len(lp["tokens"]) == 4 and len(lp["token_logprobs"]) == 4 and len(lp["top_logprobs"][0]) <= 2, lp
        assert all(x <= 0 for x in lp["token_logprobs"]), lp
        assert a["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                              "prompt_tokens_details": {"cached_tokens": a["usage"]["prompt_tokens_details"]["cached_tokens"]}}, a
        st, b, _ = q("POST", "/v1/completions", dict(body, prompt=[97, 98, 99], logprobs=None))
        assert st == 200 and b["choices"][0]["text"] == ca["text"], (b, ca)
        st, m, _ = q("POST", "/v1/completions", dict(body, prompt=["abc", [97, 98]], echo=False, logprobs=None))
        assert st == 200 and len(m["choices"]) == 2 and m["choices"][0]["text"] == ca["text"][3:], m
        st, ev = srv.stream("/v1/completions", dict(body, echo=False, logprobs=None, stream=True))
        text = "".join(x["choices"][0]["text"] for x in ev[:-1])
        assert ev[-1] == "[DONE]" and text == ca["text"][3:], (text, ca["text"])
    check("completions_echo_ids_stream", completions)

    def embeddings():
        body = {"model": "tiny", "input": ["hello", "world"]}
        st, f, _ = q("POST", "/v1/embeddings", dict(body, encoding_format="float"))
        assert st == 200 and f["object"] == "list" and len(f["data"]) == 2, f
        st, b, _ = q("POST", "/v1/embeddings", body | {"encoding_format": "base64"})
        assert st == 200, b
        for i in range(2):
            v = f["data"][i]["embedding"]
            raw = base64.b64decode(b["data"][i]["embedding"])
            w = struct.unpack("<%df" % (len(raw) // 4), raw)
            assert len(v) == len(w) == 64, (len(v), len(w))
            assert max(abs(x - y) for x, y in zip(v, w)) < 1e-6
            assert abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4
        assert f["data"][0]["embedding"] != f["data"][1]["embedding"]
        assert f["usage"]["prompt_tokens"] == 10, f["usage"]
    check("embeddings_float_base64", embeddings)

    def tools_named():
        tools = [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
            "additionalProperties": False}}}]
        body = dict(chat_body, tools=tools, tool_choice={"type": "function", "function": {"name": "f"}},
                    max_tokens=40, logit_bias={})
        st, r, _ = q("POST", "/v1/chat/completions", body)
        assert st == 200, r
        c = r["choices"][0]
        call = c["message"]["tool_calls"][0]
        assert call["type"] == "function" and call["function"]["name"] == "f" and call["id"].startswith("call_"), c
        if c["finish_reason"] == "tool_calls":
            assert isinstance(json.loads(call["function"]["arguments"])["x"], int), call
        st, ev = srv.stream("/v1/chat/completions", dict(body, stream=True))
        deltas = [x["choices"][0]["delta"] for x in ev[:-1] if x["choices"]]
        tc = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
        assert tc and tc[0]["id"] and tc[0]["function"]["name"] == "f", tc
        assert all("id" not in t and "name" not in t["function"] and t["index"] == 0 for t in tc[1:]), tc
        args = "".join(t["function"]["arguments"] for t in tc)
        assert args == call["function"]["arguments"] or c["finish_reason"] == "length", (args, call)
    check("tool_choice_named_grammar", tools_named)

    def json_mode():
        st, r, _ = q("POST", "/v1/chat/completions", dict(chat_body, response_format={"type": "json_object"},
                                                           max_tokens=60, logit_bias={}))
        assert st == 200, r
        c = r["choices"][0]
        assert c["message"]["content"].lstrip().startswith("{"), c
        if c["finish_reason"] == "stop":
            assert isinstance(json.loads(c["message"]["content"]), dict), c
        st, e, _ = q("POST", "/v1/chat/completions", dict(chat_body, response_format={
            "type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "patternProperties": {"a": {}}}}}))
        assert st == 400 and e["error"]["param"], e
    check("response_format_json", json_mode)

    resp_body = {"model": "tiny", "instructions": "Be brief.", "input": "Hi there", "max_output_tokens": 8,
                 "temperature": 0, "seed": 11, "logit_bias": NO_EOG, "metadata": {"k": "v"}, "store": True}
    st, resp, _ = q("POST", "/v1/responses", resp_body)

    def responses_shape():
        assert st == 200, resp
        assert resp["id"].startswith("resp_") and resp["object"] == "response" and resp["model"] == "tiny", resp
        assert isinstance(resp["created_at"], int) and resp["error"] is None, resp
        # the token budget ran out: incomplete, as OpenAI reports it
        assert resp["status"] == "incomplete" and resp["incomplete_details"] == {"reason": "max_output_tokens"}, resp
        assert [o["type"] for o in resp["output"]] == ["message"], resp["output"]
        msg = resp["output"][0]
        assert msg["id"].startswith("msg_") and msg["role"] == "assistant" and msg["status"] == "incomplete", msg
        part = msg["content"][0]
        assert part["type"] == "output_text" and part["annotations"] == [] and len(part["text"]) > 0, part
        # instructions are the system message: the same prompt as the chat request
        assert resp["usage"] == {"input_tokens": n_prompt, "input_tokens_details": {"cached_tokens": resp["usage"]["input_tokens_details"]["cached_tokens"]},
                                 "output_tokens": 8, "output_tokens_details": {"reasoning_tokens": 0},
                                 "total_tokens": n_prompt + 8}, (resp["usage"], n_prompt)
        assert part["text"] == q("POST", "/v1/chat/completions", dict(chat_body, seed=11))[1]["choices"][0]["message"]["content"]
        echo = {k: resp[k] for k in ("instructions", "max_output_tokens", "metadata", "temperature", "top_p", "tools",
                                     "tool_choice", "parallel_tool_calls", "text", "store", "previous_response_id")}
        assert echo == {"instructions": "Be brief.", "max_output_tokens": 8, "metadata": {"k": "v"}, "temperature": 0,
                        "top_p": 1.0, "tools": [], "tool_choice": "none", "parallel_tool_calls": True,
                        "text": {"format": {"type": "text"}}, "store": True, "previous_response_id": None}, echo
    check("responses_nonstreaming", responses_shape)

    def responses_stream():
        st, ev, done = srv.named_events("/v1/responses", dict(resp_body, stream=True))
        assert st == 200 and not done, (st, done)
        names = [n for n, _ in ev]
        assert all(n == d["type"] for n, d in ev), "event name != data type"
        assert [d["sequence_number"] for _, d in ev] == list(range(len(ev))), "sequence numbers"
        n_delta = names.count("response.output_text.delta")
        assert names == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"] + ["response.output_text.delta"] * n_delta + [
                            "response.output_text.done", "response.content_part.done", "response.output_item.done",
                            "response.incomplete"], names
        d = dict(ev)
        assert d["response.created"]["response"]["status"] == "in_progress" and d["response.created"]["response"]["output"] == []
        item_id = d["response.output_item.added"]["item"]["id"]
        deltas = [x for n, x in ev if n == "response.output_text.delta"]
        assert all(x["item_id"] == item_id and x["output_index"] == 0 and x["content_index"] == 0 for x in deltas)
        text = "".join(x["delta"] for x in deltas)
        want = resp["output"][0]["content"][0]["text"]
        assert text == want == d["response.output_text.done"]["text"], (text, want)
        final = d["response.incomplete"]["response"]
        assert final["output"][0]["content"] == resp["output"][0]["content"] and final["usage"]["output_tokens"] == 8, final
        assert d["response.output_item.done"]["item"] == final["output"][0], d["response.output_item.done"]
    check("responses_streaming_events_match", responses_stream)

    def responses_tools():
        tools = [{"type": "function", "name": "f", "description": "look up", "parameters": {
            "type": "object", "properties": {"x": {"type": "string", "enum": ["a", "b"]}}, "required": ["x"],
            "additionalProperties": False}, "strict": True}]
        no_space = {str(b): -100 for b in (9, 10, 13, 32)}  # compact JSON: the random model loves whitespace
        body = {"model": "tiny", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi there"}]}],
                "tools": tools, "tool_choice": {"type": "function", "name": "f"}, "max_output_tokens": 40,
                "temperature": 0, "logit_bias": no_space}
        st, r, _ = q("POST", "/v1/responses", body)
        assert st == 200 and r["status"] == "completed", r
        assert [o["type"] for o in r["output"]] == ["function_call"], r["output"]
        call = r["output"][0]
        assert call["id"].startswith("fc_") and call["call_id"].startswith("call_") and call["name"] == "f", call
        assert call["status"] == "completed" and json.loads(call["arguments"])["x"] in ("a", "b"), call
        assert r["tools"] == tools and r["tool_choice"] == {"type": "function", "name": "f"}, r
        st, ev, _ = srv.named_events("/v1/responses", dict(body, stream=True))
        names = [n for n, _ in ev]
        assert names[2] == "response.output_item.added" and names[-2:] == ["response.output_item.done", "response.completed"], names
        args = "".join(x["delta"] for n, x in ev if n == "response.function_call_arguments.delta")
        done = dict(ev)["response.function_call_arguments.done"]
        assert args == done["arguments"] == call["arguments"] and done["name"] == "f", (args, done)
        # the round trip: the call and its output go back as input items
        history = body["input"] + [{"type": "function_call", "call_id": call["call_id"], "name": "f",
                                    "arguments": call["arguments"]},
                                   {"type": "function_call_output", "call_id": call["call_id"], "output": '{"y": 1}'}]
        st, r2, _ = q("POST", "/v1/responses", dict(body, input=history, tool_choice="auto", max_output_tokens=4))
        assert st == 200 and r2["usage"]["input_tokens"] > r["usage"]["input_tokens"] + len('{"y": 1}'), (r2, r["usage"])
    check("responses_function_tool_round_trip", responses_tools)

    def responses_errors():
        base = {"model": "tiny", "input": "Hi"}
        cases = [
            (dict(base, conversation="conv_1"), "conversation", "previous_response_id"),
            (dict(base, tools=[{"type": "web_search"}]), "tools[0].type", "web_search"),
            (dict(base, tools=[{"type": "function"}]), "tools[0].name", "name"),
            ({"model": "tiny"}, "input", "input"),
            (dict(base, input=[{"role": "robot", "content": "x"}]), "input[0].role", "role"),
            (dict(base, input=[{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]),
             "input[0].content[0]", "input_image"),
            (dict(base, input=[{"type": "function_call", "call_id": "c", "name": "f"}]), "input[0].arguments", "arguments"),
            (dict(base, max_output_tokens=0), "max_output_tokens", "max_output_tokens"),
            (dict(base, tool_choice={"type": "web_search"}), "tool_choice", "tool_choice"),
            (dict(base, text={"format": {"type": "yaml"}}), "text.format.type", "text.format"),
        ]
        for body, param, word in cases:
            st, e, _ = q("POST", "/v1/responses", body)
            assert st == 400 and e["error"]["param"] == param and word in e["error"]["message"], (body, st, e)
            assert e["error"]["type"] == "invalid_request_error", e
        st, e, _ = q("POST", "/v1/responses", dict(base, model="nope"))
        assert st == 404 and e["error"]["code"] == "model_not_found", e
    check("responses_400s_name_the_field", responses_errors)

    def disconnect():
        s = socket.create_connection((srv.host, srv.port))
        body = json.dumps(dict(chat_body, max_tokens=400, stream=True)).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        got = b""
        while b"data:" not in got:
            piece = s.recv(4096)
            assert piece, got
            got += piece
        s.close()
        deadline = time.time() + 5
        while time.time() < deadline:
            st, text, _ = q("GET", "/metrics")
            if re.search(r'basalt_num_requests_running\{model="tiny"\} 0\b', text):
                break
            time.sleep(0.1)
        else:
            return "running sequences did not drop to 0"
        st, _, _ = q("GET", "/health")
        assert st == 200
    check("client_disconnect_cancels", disconnect)

    def metrics():
        st, text, r = q("GET", "/metrics")
        assert st == 200 and r.getheader("Content-Type").startswith("text/plain"), st
        metrics_families(text)
        m = re.search(r'basalt_requests_total\{model="tiny",endpoint="/v1/chat/completions",status="200"\} (\d+)', text)
        assert m and int(m.group(1)) >= 5, text[:400]
        assert re.search(r'basalt_requests_total\{model="[a-z]*",endpoint="/v1/chat/completions",status="400"\} \d+', text)
        g = re.search(r'basalt_generation_tokens_total\{model="tiny"\} (\d+)', text)
        assert g and int(g.group(1)) > 40, g
        assert re.search(r"basalt_time_to_first_token_seconds_count [1-9]", text)
        assert "basalt_inter_token_latency_seconds_bucket" in text and "basalt_kv_cache_usage_ratio" in text
    check("metrics_after_requests", metrics)

    def log_lines():
        lines = [json.loads(l) for l in open(srv.log_path) if l.startswith("{")]
        chats = [l for l in lines if l["path"] == "/v1/chat/completions" and l["status"] == 200]
        assert chats and chats[0]["model"] == "tiny" and chats[0]["completion_tokens"] == 8, chats[:1]
        assert all(k in chats[0] for k in ("request_id", "prompt_tokens", "queue_ms", "ttft_ms", "latency_ms"))
    check("json_log_line_per_request", log_lines)

    def sigterm():
        t0 = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        rc = srv.proc.wait(timeout=10)
        assert rc == 0 and time.time() - t0 < 7, (rc, time.time() - t0)
    check("sigterm_clean_shutdown", sigterm)
    if srv.proc.poll() is None:
        srv.proc.kill()
    if results["fail"]:
        sys.stdout.write("---- server log (tail) ----\n" + "".join(open(srv.log_path).readlines()[-30:]))
    family_servers(binary, work)
    tools_dir = os.path.join(work, "tools")
    make_tool_model(tools_dir)
    srv2 = Server(binary, [("tools", tools_dir), ("other", tools_dir)], work,
                  ["--ctx", "1024", "--responses-store", "3"], log="serve2.log")
    try:
        second_server(srv2)
    finally:
        srv2.proc.kill()
        srv2.proc.wait()
    return 0


STRICT_TOOL = {"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"x": {"type": "string", "enum": ["a", "b"]},
                                     "n": {"type": "integer", "minimum": 0, "maximum": 9}},
    "required": ["x", "n"], "additionalProperties": False}, "strict": True}}


def valid_f_args(text):
    a = json.loads(text)
    return set(a) == {"x", "n"} and a["x"] in ("a", "b") and isinstance(a["n"], int) and 0 <= a["n"] <= 9


def metrics_families(text):
    """Strict exposition check: each family's HELP and TYPE once, TYPE before
    its samples; returns {family: [sample lines]}."""
    typed, helped, samples = {}, set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helped, "HELP twice: " + name
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name not in typed, "TYPE twice: " + name
            assert name not in samples, "TYPE after samples: " + name
            typed[name] = kind
        elif line:
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            fam = name
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and typed.get(name[:-len(suffix)]) == "histogram":
                    fam = name[:-len(suffix)]
            assert fam in typed, "sample before its TYPE: " + line
            samples.setdefault(fam, []).append(line)
    assert set(typed) == helped, set(typed) ^ helped
    return samples


def second_server(srv):
    """Two models (the same files twice: the tiny model with tool-call
    tokens), a response store of 3: strict tools under auto, stored
    responses, metrics."""
    q = srv.request
    no_space = {str(b): -100 for b in (9, 10, 13, 32)}
    # 257 ("Sure. <tool_call>\n") first: the random model heads into a call at once
    base = {"model": "tools", "messages": [{"role": "user", "content": "hi"}], "tools": [STRICT_TOOL],
            "logit_bias": dict(no_space, **{"257": 100}), "max_tokens": 150, "temperature": 0}

    def strict_auto():
        st, r, _ = q("POST", "/v1/chat/completions", dict(base, parallel_tool_calls=False))
        assert st == 200, r
        c = r["choices"][0]
        # the trigger arrived inside a token: its text before is content, the rest fed the grammar
        assert c["message"]["content"] == "Sure." and c["finish_reason"] == "tool_calls", c
        calls = c["message"]["tool_calls"]
        assert len(calls) == 1 and calls[0]["function"]["name"] == "f", calls
        assert valid_f_args(calls[0]["function"]["arguments"]), calls
        st, ev = srv.stream("/v1/chat/completions", dict(base, parallel_tool_calls=False, stream=True))
        args = "".join(d["tool_calls"][0]["function"]["arguments"] for x in ev[:-1] for d in [x["choices"][0]["delta"]]
                       if "tool_calls" in d)
        assert args == calls[0]["function"]["arguments"], (args, calls)
        # parallel calls: the grammar lets go after each block and takes the next one
        st, r, _ = q("POST", "/v1/chat/completions", base)
        calls = r["choices"][0]["message"]["tool_calls"]
        assert len(calls) >= 2 and all(valid_f_args(x["function"]["arguments"]) for x in calls), r
        # not strict: the same request is not constrained (no call parses out of the noise)
        loose = dict(base, tools=[dict(STRICT_TOOL, function=dict(STRICT_TOOL["function"], strict=False))],
                     parallel_tool_calls=False)
        st, r, _ = q("POST", "/v1/chat/completions", loose)
        c = r["choices"][0]
        assert st == 200 and "tool_calls" not in c["message"] and c["finish_reason"] == "length", c
        assert c["message"]["content"].startswith("Sure. <tool_call>\nSure. <tool_call>"), c
    check("strict_tools_under_auto_lazy_grammar", strict_auto)

    def stored_responses():
        body = {"model": "other", "input": "Hi there", "max_output_tokens": 4, "temperature": 0,
                "logit_bias": NO_EOG}
        st, r1, _ = q("POST", "/v1/responses", body)
        assert st == 200 and r1["store"] is True, r1
        st, got, _ = q("GET", "/v1/responses/" + r1["id"])
        assert st == 200 and got == r1, (got, r1)
        # continuing: the earlier input and output come before the new input
        st, r2, _ = q("POST", "/v1/responses", dict(body, input="More", previous_response_id=r1["id"]))
        assert st == 200 and r2["previous_response_id"] == r1["id"], r2
        st, alone, _ = q("POST", "/v1/responses", dict(body, input="More", store=False))
        assert alone["store"] is False and q("GET", "/v1/responses/" + alone["id"])[0] == 404
        assert r2["usage"]["input_tokens"] > alone["usage"]["input_tokens"] + r1["usage"]["output_tokens"], (r2, alone)
        # an item reference stands for the stored item: the same prompt as the item itself
        msg = r1["output"][0]
        st, by_ref, _ = q("POST", "/v1/responses", dict(body, input=[
            {"role": "user", "content": "Hi there"}, {"type": "item_reference", "id": msg["id"]},
            {"role": "user", "content": "More"}]))
        assert st == 200 and by_ref["usage"]["input_tokens"] == r2["usage"]["input_tokens"], (by_ref, r2)
        for b, param in ((dict(body, previous_response_id="resp_nope"), "previous_response_id"),
                         (dict(body, input=[{"type": "item_reference", "id": "msg_nope"}]), "input[0].id")):
            st, e, _ = q("POST", "/v1/responses", b)
            assert st == 404 and e["error"]["param"] == param and "_nope" in e["error"]["message"], e
        st, d, _ = q("DELETE", "/v1/responses/" + r2["id"])
        assert st == 200 and d == {"id": r2["id"], "object": "response", "deleted": True}, d
        st, e, _ = q("GET", "/v1/responses/" + r2["id"])
        assert st == 404 and r2["id"] in e["error"]["message"], e
        assert q("DELETE", "/v1/responses/" + r2["id"])[0] == 404
        # the store keeps 3, least recently used out first: newer responses push r1 out
        for _ in range(3):
            assert q("POST", "/v1/responses", body)[0] == 200
        st, e, _ = q("GET", "/v1/responses/" + r1["id"])
        assert st == 404 and e["error"]["type"] == "not_found_error", e
    check("responses_store_previous_id_item_reference", stored_responses)

    def metrics_two_models():
        st, text, _ = q("GET", "/metrics")
        fams = metrics_families(text)
        for fam in ("basalt_num_requests_running", "basalt_kv_cache_usage_ratio", "basalt_scheduler_steps_total"):
            models = sorted(re.search(r'model="([^"]*)"', l).group(1) for l in fams[fam])
            assert models == ["other", "tools"], (fam, fams[fam])
        gen = {re.search(r'model="([^"]*)"', l).group(1): int(l.split()[-1]) for l in fams["basalt_generation_tokens_total"]}
        assert gen.get("tools", 0) > 100 and gen.get("other", 0) > 10, gen
        assert any('model="tools",endpoint="/v1/chat/completions",status="200"' in l
                   for l in fams["basalt_requests_total"]), fams["basalt_requests_total"]
    check("metrics_valid_exposition_two_models", metrics_two_models)


# Families whose calls are not Hermes JSON: a template that names the
# family's markup, and the trigger (after "Sure. ") and closer as tokens.
FAMILIES = {
    "qwen3_coder": ("Call as <tool_call>\n<function=NAME>\n<parameter=KEY>\nvalue\n</parameter>\n</function>\n"
                    "</tool_call>", ("Sure. <tool_call>\n", "</tool_call>")),
    "minimax_m2": ('Call as <minimax:tool_call>\n<invoke name="NAME">\n<parameter name="KEY">value</parameter>\n'
                   "</invoke>\n</minimax:tool_call>", ("Sure. <minimax:tool_call>\n", "</minimax:tool_call>")),
    "deepseek_v3": ("Call as <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{args}<｜tool▁call▁end｜>"
                    "<｜tool▁calls▁end｜>", ("Sure. <｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>")),
}


def family_servers(binary, work):
    """Strict tools under auto in the XML and DeepSeek families, served with
    --quantize q8_0 and --train-threads."""
    models = []
    for fam, (markup, tokens) in FAMILIES.items():
        d = os.path.join(work, fam)
        make_tool_model(d, TEMPLATE.replace("You may call tools:", markup), tokens)
        models.append((fam, d))
    srv = Server(binary, models, work, ["--ctx", "1024", "--quantize", "q8_0", "--train-threads", "1"],
                 log="serve3.log")
    q = srv.request
    no_space = {str(b): -100 for b in (9, 10, 13, 32)}

    def quantized_models():
        st, r, _ = q("GET", "/v1/models")
        assert st == 200 and sorted(m["id"] for m in r["data"]) == sorted(FAMILIES), r
    check("serve_quantize_q8_0_models", quantized_models)

    def strict_families():
        for fam in FAMILIES:
            base = {"model": fam, "messages": [{"role": "user", "content": "hi"}], "tools": [STRICT_TOOL],
                    "logit_bias": dict(no_space, **{"257": 100}), "max_tokens": 150, "temperature": 0}
            st, r, _ = q("POST", "/v1/chat/completions", dict(base, parallel_tool_calls=False))
            assert st == 200, (fam, r)
            c = r["choices"][0]
            calls = c["message"].get("tool_calls") or []
            assert c["message"]["content"] == "Sure." and c["finish_reason"] == "tool_calls", (fam, c)
            assert len(calls) == 1 and calls[0]["function"]["name"] == "f", (fam, calls)
            assert valid_f_args(calls[0]["function"]["arguments"]), (fam, calls)
            # parallel: Qwen3-Coder's grammar lets go after each block; the
            # others take several calls in one block (the closer token ends it)
            par = dict(base, max_tokens=300) if fam == "qwen3_coder" else \
                dict(base, logit_bias=dict(base["logit_bias"], **{"258": 100}))
            st, r, _ = q("POST", "/v1/chat/completions", par)
            calls = r["choices"][0]["message"].get("tool_calls") or []
            assert st == 200 and len(calls) >= (2 if fam == "qwen3_coder" else 1), (fam, r)
            assert all(valid_f_args(x["function"]["arguments"]) for x in calls), (fam, calls)
            # what the markup cannot carry is a 400 naming the tool, never unenforced
            if fam != "deepseek_v3":
                bad = dict(STRICT_TOOL, function=dict(STRICT_TOOL["function"], name="g", parameters={
                    "type": "object", "properties": {"s": {"type": "string", "pattern": "^a+$"}}}))
                st, e, _ = q("POST", "/v1/chat/completions", dict(base, tools=[STRICT_TOOL, bad]))
                assert st == 400 and e["error"]["param"] == "tools", (fam, e)
                assert "tools[1] (g)" in e["error"]["message"] and "'pattern'" in e["error"]["message"], e
    check("strict_tools_xml_deepseek_families", strict_families)
    srv.proc.kill()
    srv.proc.wait()
    if results["fail"]:
        sys.stdout.write("---- server log (tail) ----\n" + "".join(open(srv.log_path).readlines()[-30:]))


if __name__ == "__main__":
    sys.exit(main())
