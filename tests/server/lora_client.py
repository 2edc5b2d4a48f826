#!/usr/bin/python3
"""tests/server/lora_client.py BASALT_BIN WORKDIR -- LoRA adapters in
`basalt serve`: --lora at start, /v1/models with parent and root, chat and
completions with an adapter (which must change the output), requests for two
adapters and the base at once (the same outputs as one at a time), vLLM's
runtime load/unload endpoints, unloading while a request streams, and bad
adapters as OpenAI error objects.  Adapters are written here by hand in
PEFT's format.  Prints PASS/FAIL lines."""
import json
import math
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "oracle"))
import serve_client as sc  # noqa: E402

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def write_adapter(out, modules, rank, alpha, seed, gain, base="tiny"):
    """A PEFT LoRA directory over the tiny qwen2 model with B large enough
    to change its greedy output."""
    import torch
    import make_model as mm
    a = mm.ARCHS["qwen2"]
    D, F, qd, kvd = a["dim"], a["ffn"], a["heads"] * a["head_dim"], a["kv_heads"] * a["head_dim"]
    dims = {"q_proj": (D, qd), "k_proj": (D, kvd), "v_proj": (D, kvd), "o_proj": (qd, D),
            "gate_proj": (D, F), "up_proj": (D, F), "down_proj": (F, D)}
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for l in range(a["layers"]):
        for m in LINEARS:
            short = m.split(".")[1]
            if short not in modules:
                continue
            i, o = dims[short]
            p = "base_model.model.model.layers.%d.%s." % (l, m)
            tensors[p + "lora_A.weight"] = torch.randn(rank, i, generator=gen) / math.sqrt(i)
            tensors[p + "lora_B.weight"] = torch.randn(o, rank, generator=gen) * gain
    os.makedirs(out, exist_ok=True)
    mm.write_safetensors(os.path.join(out, "adapter_model.safetensors"), tensors, "F32")
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base, "r": rank,
           "lora_alpha": alpha, "lora_dropout": 0.05, "target_modules": modules, "bias": "none",
           "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "modules_to_save": None}
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(cfg, f)
    return out


def main():
    binary, work = sys.argv[1], sys.argv[2]
    try:
        import torch  # noqa: F401
    except ImportError:
        print("SKIP lora: PyTorch not importable by this python")
        return 0
    tiny = os.path.join(work, "tiny")
    sc.make_model(tiny)
    xdir = write_adapter(os.path.join(work, "x"), ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                   "down_proj"], 4, 8, 1, 1.0)
    ydir = write_adapter(os.path.join(work, "y"), ["q_proj", "v_proj"], 2, 4, 2, 2.0)
    bad_rank = write_adapter(os.path.join(work, "bad-rank"), ["q_proj"], 4, 8, 3, 1.0)
    with open(os.path.join(bad_rank, "adapter_config.json")) as f:
        cfg = json.load(f)
    cfg["r"] = 8
    with open(os.path.join(bad_rank, "adapter_config.json"), "w") as f:
        json.dump(cfg, f)

    srv = sc.Server(binary, [("tiny", tiny)], work, extra=["--lora", "x=" + xdir, "--lora", "y=%s@tiny" % ydir])
    q = srv.request

    def chat(model, n=24, stream=False):
        body = {"model": model, "messages": sc.MSGS, "max_tokens": n, "temperature": 0, "logit_bias": sc.NO_EOG}
        st, r, _ = q("POST", "/v1/chat/completions", body)
        assert st == 200, (st, r)
        return r["choices"][0]["message"]["content"]

    try:
        def models():
            st, r, _ = q("GET", "/v1/models")
            assert st == 200, r
            by = {m["id"]: m for m in r["data"]}
            assert set(by) == {"tiny", "x", "y"}, by
            assert by["x"]["parent"] == "tiny" and by["x"]["root"] == xdir, by["x"]
            assert by["y"]["parent"] == "tiny" and by["y"]["root"] == ydir, by["y"]
            assert by["tiny"].get("parent") is None and by["tiny"]["root"] == tiny, by["tiny"]
            st, r, _ = q("GET", "/v1/models/y")
            assert st == 200 and r["parent"] == "tiny", r
        sc.check("lora_models_list_parent_root", models)

        outs = {}

        def differs():
            for m in ("tiny", "x", "y"):
                outs[m] = chat(m)
            assert outs["x"] != outs["tiny"] and outs["y"] != outs["tiny"] and outs["x"] != outs["y"], outs
            assert chat("x") == outs["x"]
            body = {"model": "x", "prompt": "Hello", "max_tokens": 12, "temperature": 0, "logit_bias": sc.NO_EOG}
            st, rx, _ = q("POST", "/v1/completions", body)
            st2, rb, _ = q("POST", "/v1/completions", dict(body, model="tiny"))
            assert st == 200 and st2 == 200 and rx["model"] == "x", rx
            assert rx["choices"][0]["text"] != rb["choices"][0]["text"], (rx, rb)
        sc.check("lora_chat_differs_from_base", differs)

        def concurrent():
            got = {}

            def one(m, k):
                got[(m, k)] = chat(m)
            threads = [threading.Thread(target=one, args=(m, k)) for k in range(2) for m in ("tiny", "x", "y")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for (m, k), text in got.items():
                assert text == outs[m], (m, k, text, outs[m])
            assert len(got) == 6
        sc.check("lora_mixed_batch_same_outputs", concurrent)

        def runtime_load():
            st, r, _ = q("POST", "/v1/load_lora_adapter", {"lora_name": "z", "lora_path": xdir})
            assert st == 200 and "Success" in r, (st, r)
            assert chat("z") == outs["x"]
            st, r, _ = q("POST", "/v1/load_lora_adapter", {"lora_name": "z", "lora_path": xdir})
            assert st == 400 and "already been loaded" in r["error"]["message"], (st, r)
            st, r, _ = q("POST", "/v1/unload_lora_adapter", {"lora_name": "z"})
            assert st == 200 and "removed" in r, (st, r)
            st, r, _ = q("POST", "/v1/chat/completions", {"model": "z", "messages": sc.MSGS})
            assert st == 404 and r["error"]["code"] == "model_not_found", (st, r)
            st, r, _ = q("POST", "/v1/unload_lora_adapter", {"lora_name": "z"})
            assert st == 404 and "cannot be found" in r["error"]["message"], (st, r)
            st, r, _ = q("GET", "/v1/models")
            assert "z" not in [m["id"] for m in r["data"]], r
        sc.check("lora_runtime_load_unload", runtime_load)

        def bad_adapters():
            st, r, _ = q("POST", "/v1/load_lora_adapter", {"lora_name": "b", "lora_path": os.path.join(work, "nope")})
            assert st == 400 and r["error"]["param"] == "lora_path" and "nope" in r["error"]["message"], (st, r)
            assert "\n" not in r["error"]["message"]
            st, r, _ = q("POST", "/v1/load_lora_adapter", {"lora_name": "b", "lora_path": bad_rank})
            assert st == 400 and "has shape [4, 64], expected [8, 64]" in r["error"]["message"], (st, r)
            st, r, _ = q("POST", "/v1/load_lora_adapter", {"lora_name": "b"})
            assert st == 400 and r["error"]["param"] == "lora_path", (st, r)
            st, r, _ = q("POST", "/v1/load_lora_adapter", {"lora_name": "tiny", "lora_path": xdir})
            assert st == 400 and "base model" in r["error"]["message"], (st, r)
            st, r, _ = q("POST", "/v1/load_lora_adapter",
                         {"lora_name": "b", "lora_path": xdir, "base_model_name": "other"})
            assert st == 400 and "other is not served" in r["error"]["message"], (st, r)
        sc.check("lora_bad_adapter_errors", bad_adapters)

        def unload_while_running():
            st, r, _ = q("POST", "/v1/load_lora_adapter", {"lora_name": "w", "lora_path": ydir})
            assert st == 200, r
            result = {}

            def run():
                result["r"] = srv.stream("/v1/chat/completions",
                                         {"model": "w", "messages": sc.MSGS, "max_tokens": 300, "temperature": 0,
                                          "logit_bias": sc.NO_EOG, "stream": True,
                                          "stream_options": {"include_usage": True}})
            t = threading.Thread(target=run)
            t.start()
            time.sleep(0.3)
            st, r, _ = q("POST", "/v1/unload_lora_adapter", {"lora_name": "w"})
            assert st == 200, r
            t.join()
            st, events = result["r"]
            assert st == 200 and events[-1] == "[DONE]", (st, events[-3:])
            usage = [e for e in events[:-1] if e.get("usage")]
            assert usage and usage[-1]["usage"]["completion_tokens"] == 300, usage
            text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.get("choices"))
            assert text.startswith(outs["y"]), (text[:40], outs["y"])
            st, _, _ = q("GET", "/health")
            assert st == 200
        sc.check("lora_unload_while_running", unload_while_running)
    finally:
        srv.proc.terminate()
        srv.proc.wait(timeout=30)

    def bad_flag():
        p = subprocess.run([binary, "serve", "--port", "0", "--data", os.path.join(work, "data"), "--model",
                            "tiny=" + tiny, "--lora", "b=" + bad_rank], capture_output=True, text=True, timeout=60)
        assert p.returncode == 1, (p.returncode, p.stderr[-400:])
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("basalt serve: --lora b:") and "has shape [4, 64]" in last, last
    sc.check("lora_bad_flag_fails_at_start", bad_flag)
    return 1 if sc.results["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
