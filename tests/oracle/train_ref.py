#!/usr/bin/python3
"""tests/oracle/train_ref.py OUTDIR -- the trainer's independent reference.

Writes tiny random models with make_model.py's writers and runs
make_model.forward under PyTorch autograd (float64, on the weights as
stored) with LoRA deltas or with every parameter a leaf, on one packed
micro-batch; then three torch.optim.AdamW steps with clip_grad_norm_ and
the warmup + cosine schedule of transformers.

OUTDIR/batch.bin      int32 B, int32 lengths[B], int32 tokens[sum], float32 masks[sum]
OUTDIR/manifest.txt   one line per case: NAME MODEL_PATH MODE(lora|full) RANK ALPHA RSLORA
OUTDIR/<case>.init    named tensors: the LoRA A/B the C side must start from (lora only)
OUTDIR/<case>.grad    named tensors: gradient of the first micro-batch's mean loss
OUTDIR/<case>.loss    float64[STEPS+1]: loss before each step, then after the last

Named tensors: repeated {u32 name length, name, u32 rows, u32 cols, float32 data}.
The optimizer constants below are repeated in tests/train/test_grad_oracle.c.
"""
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model as mm  # noqa: E402

LR, WD, BETAS, EPS, CLIP = 2e-3, 0.1, (0.9, 0.999), 1e-8, 1.0
WARMUP, TOTAL, STEPS = 1, 4, 3
LENGTHS = (30, 13)   # 30 > mistral's sliding window of 24
SEED = 4321
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def lr_lambda(step):
    """transformers get_cosine_schedule_with_warmup (num_cycles 0.5)."""
    if step < WARMUP:
        return step / max(1, WARMUP)
    progress = (step - WARMUP) / max(1, TOTAL - WARMUP)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * 0.5 * progress)))


def write_named(path, tensors):
    with open(path, "wb") as f:
        for name, t in tensors.items():
            t2 = t.detach().reshape(t.shape[0], -1)
            b = name.encode()
            f.write(struct.pack("<I", len(b)) + b + struct.pack("<II", t2.shape[0], t2.shape[1]))
            f.write(t2.numpy().astype("<f4").tobytes())


def loss_fn(a, w, seqs, masks, window, delta):
    total, wsum = 0.0, 0.0
    for toks, m in zip(seqs, masks):
        logits = mm.forward(a, w, toks, window, delta)[:-1]
        target = torch.tensor(toks[1:])
        wt = torch.tensor(m[1:], dtype=torch.float64)
        nll = torch.logsumexp(logits, -1) - logits.gather(1, target[:, None])[:, 0]
        total = total + (nll * wt).sum()
        wsum += float(wt.sum())
    return total / wsum


def run_case(out, name, a, stored, window, mode, rank, alpha, rslora, seqs, masks, gen):
    if mode == "lora":
        scale = alpha / math.sqrt(rank) if rslora else alpha / rank
        base = {k: v.double() for k, v in stored.items()}
        params, lora = {}, {}
        for l in range(a["layers"]):
            for mod in LINEARS:
                key = "model.layers.%d.%s" % (l, mod)
                wt = stored[key + ".weight"]
                fan_in = wt.shape[1]
                A = (torch.rand(rank, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(fan_in)
                B = torch.randn(wt.shape[0], rank, generator=gen, dtype=torch.float64) * 0.1
                A, B = A.float().double(), B.float().double()   # exactly what the C side loads
                pa, pb = "base_model.model.%s.lora_A.weight" % key, "base_model.model.%s.lora_B.weight" % key
                params[pa] = A.requires_grad_()
                params[pb] = B.requires_grad_()
                lora[key] = (params[pa], params[pb])
        write_named(os.path.join(out, name + ".init"), params)
        w = base

        def delta(key, inp):
            A, B = lora[key]
            return scale * (inp @ A.T) @ B.T
        decay = list(params.values())
        no_decay = []
    else:
        params = {k: v.double().clone().requires_grad_() for k, v in stored.items()}
        w, delta = params, None
        decay = [p for k, p in params.items() if p.dim() == 2]
        no_decay = [p for k, p in params.items() if p.dim() == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    losses = []
    for step in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(a, w, seqs, masks, window, delta)
        loss.backward()
        if step == 0:
            write_named(os.path.join(out, name + ".grad"), {k: p.grad for k, p in params.items()})
        losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(list(params.values()), CLIP)
        for g in opt.param_groups:
            g["lr"] = LR * lr_lambda(step)
        opt.step()
    with torch.no_grad():
        losses.append(loss_fn(a, w, seqs, masks, window, delta).item())
    np.array(losses, dtype="<f8").tofile(os.path.join(out, name + ".loss"))


def main():
    out = sys.argv[1]
    gen = torch.Generator().manual_seed(SEED)
    seqs = [torch.randint(0, mm.VOCAB, (n,), generator=gen).tolist() for n in LENGTHS]
    masks = []
    for n in LENGTHS:
        m = (torch.rand(n, generator=gen) < 0.7).float()
        m[:3] = 0   # a "prompt" that is never a target
        masks.append(m.tolist())
    with open(os.path.join(out, "batch.bin"), "wb") as f:
        f.write(struct.pack("<i", len(LENGTHS)) + struct.pack("<%di" % len(LENGTHS), *LENGTHS))
        for s in seqs:
            f.write(np.array(s, dtype="<i4").tobytes())
        for m in masks:
            f.write(np.array(m, dtype="<f4").tobytes())
    manifest = []

    def case(name, path, a, stored, window, mode, rank=0, alpha=0.0, rslora=0):
        run_case(out, name, a, stored, window, mode, rank, alpha, rslora, seqs, masks, gen)
        manifest.append("%s %s %s %d %g %d" % (name, path, mode, rank, alpha, rslora))

    for arch in ("llama", "llama_bias", "mistral", "qwen2", "qwen3"):
        a = mm.ARCHS[arch]
        w = mm.make_weights(a, gen)
        window = a.get("sliding_window", 0)
        if arch in ("mistral", "qwen3"):
            d = os.path.join(out, arch + "-hf-bf16")
            mm.write_hf(d, a, w, "BF16")
            stored = {k: mm.round_bf16(v) for k, v in w.items()}
        else:
            d = os.path.join(out, arch + "-hf-f32")
            mm.write_hf(d, a, w, "F32")
            stored = w
        base = os.path.basename(d)
        if arch != "llama_bias":
            case(base + "-lora", d, a, stored, window, "lora", 4, 8.0, arch == "mistral")
        if arch != "mistral":
            case(base + "-full", d, a, stored, window, "full")
        if arch == "qwen3":
            path = os.path.join(out, "qwen3-q8_0.gguf")
            stored = mm.write_gguf_model(path, a, w, mm.GGML_Q8_0)
            case("qwen3-gguf-q8_0-lora", path, a, stored, 0, "lora", 4, 8.0, 0)
    # Q4_K rows are whole 256-weight blocks: a 256-wide qwen2 (biases, untied head), one layer.
    a = dict(mm.ARCHS["qwen2"], dim=256, layers=1, head_dim=64, ffn=256, tied=False)
    w = mm.make_weights(a, gen)
    path = os.path.join(out, "qwen2-q4_k.gguf")
    case("qwen2-gguf-q4_k-lora", path, a, mm.write_gguf_model(path, a, w, mm.GGML_Q4_K), 0, "lora", 8, 16.0, 0)
    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
