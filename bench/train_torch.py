#!/usr/bin/python3
"""bench/train_torch.py MODEL_DIR THREADS BATCH SEQ STEPS

The PyTorch side of bench/train_vs_torch.sh: the step bench/train_step.c
times, in plain PyTorch f32 on the CPU.  The Qwen2-style decoder of
MODEL_DIR (config.json + model.safetensors, read by hand and converted to
f32) stays frozen; LoRA r=16, alpha 32 on q, k, v, o, gate, up, down (PEFT
init: A Kaiming-uniform, B zero); AdamW (lr 2e-4, betas 0.9/0.999, wd 0);
one optimizer step per micro-batch of BATCH x SEQ random tokens.  The first
step is a warm-up and is not timed.  Prints one JSON line like the C driver.
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + a:base + b]), dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).float()
    return out


class Lora(torch.nn.Module):
    def __init__(self, w, b, r, alpha):
        super().__init__()
        self.w, self.b = w, b
        self.A = torch.nn.Parameter(torch.empty(r, w.shape[1]))
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = torch.nn.Parameter(torch.zeros(w.shape[0], r))
        self.s = alpha / r

    def forward(self, x):
        return F.linear(x, self.w, self.b) + self.s * F.linear(F.linear(x, self.A), self.B)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Model(torch.nn.Module):
    def __init__(self, cfg, w, r=16, alpha=32):
        super().__init__()
        self.cfg = cfg
        self.embed = w["model.embed_tokens.weight"]
        self.head = w.get("lm_head.weight", self.embed)
        self.norm = w["model.norm.weight"]
        self.layers = []
        mods = []
        for i in range(cfg["num_hidden_layers"]):
            p = "model.layers.%d." % i
            L = {"ln1": w[p + "input_layernorm.weight"], "ln2": w[p + "post_attention_layernorm.weight"]}
            for k, name in (("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj"),
                            ("o", "self_attn.o_proj"), ("gate", "mlp.gate_proj"), ("up", "mlp.up_proj"),
                            ("down", "mlp.down_proj")):
                L[k] = Lora(w[p + name + ".weight"], w.get(p + name + ".bias"), r, alpha)
                mods.append(L[k])
            self.layers.append(L)
        self.mods = torch.nn.ModuleList(mods)

    def forward(self, tok, target):
        c = self.cfg
        Bn, S = tok.shape
        H, KV = c["num_attention_heads"], c["num_key_value_heads"]
        hd = c["hidden_size"] // H
        eps = c["rms_norm_eps"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        ang = torch.arange(S, dtype=torch.float64)[:, None] * inv[None, :]
        cos = torch.cat((ang.cos(), ang.cos()), -1).float()
        sin = torch.cat((ang.sin(), ang.sin()), -1).float()
        mask = torch.full((S, S), float("-inf")).triu(1)
        x = self.embed[tok]
        for L in self.layers:
            h = rmsnorm(x, L["ln1"], eps)
            q = L["q"](h).view(Bn, S, H, hd).transpose(1, 2)
            k = L["k"](h).view(Bn, S, KV, hd).transpose(1, 2)
            v = L["v"](h).view(Bn, S, KV, hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1) @ v
            x = x + L["o"](att.transpose(1, 2).reshape(Bn, S, H * hd))
            h = rmsnorm(x, L["ln2"], eps)
            x = x + L["down"](F.silu(L["gate"](h)) * L["up"](h))
        logits = F.linear(rmsnorm(x, self.norm, eps), self.head)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target[:, 1:].reshape(-1))


def main():
    d, threads, Bn, S, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    model = Model(cfg, load_safetensors(os.path.join(d, "model.safetensors")))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    tok = torch.randint(0, cfg["vocab_size"], (Bn, S))
    t0 = 0.0
    for s in range(steps + 1):
        if s == 1:
            t0 = time.perf_counter()
        loss = model(tok, tok)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    dt = time.perf_counter() - t0
    print(json.dumps({"impl": "torch", "threads": threads, "batch": Bn, "seq": S, "steps": steps,
                      "tok_s": round(Bn * S * steps / dt, 1), "loss": round(loss.item(), 4)}))


if __name__ == "__main__":
    main()
