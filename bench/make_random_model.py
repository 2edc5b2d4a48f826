#!/usr/bin/python3
"""bench/make_random_model.py OUTDIR [--dtype BF16|F16] [--shape qwen2.5-0.5b|llama3.2-1b]

Writes a random-weight Hugging Face model directory (config.json +
model.safetensors) of a real model's shape, for `basalt bench`.  Weights are
N(0, 1/sqrt(fan_in)) so activations stay in range; the numbers measured are
speeds, never quality.  Uses the safetensors writer of the test oracle.
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "oracle"))
from make_model import write_safetensors  # noqa: E402

SHAPES = {
    # Qwen/Qwen2.5-0.5B: 494 M parameters, tied embeddings, q/k/v bias.
    "qwen2.5-0.5b": dict(arch="Qwen2ForCausalLM", model_type="qwen2", hidden=896, layers=24, heads=14,
                         kv_heads=2, ffn=4864, vocab=151936, theta=1000000.0, eps=1e-6, tied=True,
                         qkv_bias=True),
    # meta-llama/Llama-3.2-1B: 1.24 B parameters, tied embeddings, no bias,
    # llama3 rope scaling (factor 32 over an original 8192 positions).
    "llama3.2-1b": dict(arch="LlamaForCausalLM", model_type="llama", hidden=2048, layers=16, heads=32,
                        kv_heads=8, ffn=8192, vocab=128256, theta=500000.0, eps=1e-5, tied=True,
                        qkv_bias=False, max_pos=131072,
                        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--dtype", default="BF16", choices=["BF16", "F16", "F32"])
    ap.add_argument("--shape", default="qwen2.5-0.5b", choices=sorted(SHAPES))
    args = ap.parse_args()
    s = SHAPES[args.shape]
    gen = torch.Generator().manual_seed(0)
    hd = s["hidden"] // s["heads"]

    def mat(rows, cols):
        return torch.randn(rows, cols, generator=gen) / math.sqrt(cols)

    w = {"model.embed_tokens.weight": torch.randn(s["vocab"], s["hidden"], generator=gen)}
    for i in range(s["layers"]):
        p = "model.layers.%d." % i
        w[p + "input_layernorm.weight"] = torch.ones(s["hidden"])
        w[p + "post_attention_layernorm.weight"] = torch.ones(s["hidden"])
        w[p + "self_attn.q_proj.weight"] = mat(s["heads"] * hd, s["hidden"])
        w[p + "self_attn.k_proj.weight"] = mat(s["kv_heads"] * hd, s["hidden"])
        w[p + "self_attn.v_proj.weight"] = mat(s["kv_heads"] * hd, s["hidden"])
        w[p + "self_attn.o_proj.weight"] = mat(s["hidden"], s["heads"] * hd)
        if s["qkv_bias"]:
            w[p + "self_attn.q_proj.bias"] = torch.zeros(s["heads"] * hd)
            w[p + "self_attn.k_proj.bias"] = torch.zeros(s["kv_heads"] * hd)
            w[p + "self_attn.v_proj.bias"] = torch.zeros(s["kv_heads"] * hd)
        w[p + "mlp.gate_proj.weight"] = mat(s["ffn"], s["hidden"])
        w[p + "mlp.up_proj.weight"] = mat(s["ffn"], s["hidden"])
        w[p + "mlp.down_proj.weight"] = mat(s["hidden"], s["ffn"])
    w["model.norm.weight"] = torch.ones(s["hidden"])
    if not s["tied"]:
        w["lm_head.weight"] = mat(s["vocab"], s["hidden"])

    os.makedirs(args.outdir, exist_ok=True)
    config = {"architectures": [s["arch"]], "model_type": s["model_type"], "vocab_size": s["vocab"],
              "hidden_size": s["hidden"], "intermediate_size": s["ffn"], "num_hidden_layers": s["layers"],
              "num_attention_heads": s["heads"], "num_key_value_heads": s["kv_heads"], "hidden_act": "silu",
              "max_position_embeddings": s.get("max_pos", 32768), "rms_norm_eps": s["eps"], "rope_theta": s["theta"],
              "tie_word_embeddings": s["tied"], "torch_dtype": {"BF16": "bfloat16", "F16": "float16",
                                                                "F32": "float32"}[args.dtype]}
    if "rope_scaling" in s:
        config["rope_scaling"] = s["rope_scaling"]
    with open(os.path.join(args.outdir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write_safetensors(os.path.join(args.outdir, "model.safetensors"), w, args.dtype)
    n = sum(t.numel() for t in w.values())
    print("%s: %s %s, %.1f M parameters" % (args.outdir, args.shape, args.dtype, n / 1e6))


if __name__ == "__main__":
    main()
