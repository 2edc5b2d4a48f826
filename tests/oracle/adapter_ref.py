#!/usr/bin/python3
"""tests/oracle/adapter_ref.py -- the reference for LoRA adapters in serving.

  adapter_ref.py make OUTDIR
      Tiny random models with make_model.py's writers:
        OUTDIR/qwen2-hf-f32       Qwen2 (q/k/v bias, tied head), tokenizer.json
        OUTDIR/llama-hf-f32       Llama 3 (llama3 rope scaling)
        OUTDIR/llama-f16.gguf     the same Llama as GGUF F16 (Q/K rows permuted)
        OUTDIR/llama-f16-as-hf    the GGUF's rounded weights as an F32 HF directory
        OUTDIR/tokens.bin         int32[T] input ids

  adapter_ref.py ref ARCH MODEL_DIR ADAPTER_DIR OUT
      Reads the HF model and a PEFT adapter directory by hand (adapter_config.json
      + adapter_model.safetensors; no peft/transformers import), applies
      W' = W + scale * B @ A to every adapted projection (scale = lora_alpha / r,
      or lora_alpha / sqrt(r) with use_rslora), runs make_model.forward in
      float64 and writes float32[T][vocab] logits to OUT.  ADAPTER_DIR "-" is
      the base alone.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model as mm  # noqa: E402

T = 40
SEED = 777
PEFT_PREFIX = "base_model.model."


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        raw = data[base + a:base + b]
        if e["dtype"] == "F32":
            t = torch.from_numpy(np.frombuffer(raw, dtype="<f4").copy())
        elif e["dtype"] == "F16":
            t = torch.from_numpy(np.frombuffer(raw, dtype="<f2").astype(np.float32))
        elif e["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(raw, dtype="<i2").copy()).view(torch.bfloat16).float()
        else:
            raise SystemExit("%s: tensor %s: dtype %s" % (path, name, e["dtype"]))
        out[name] = t.reshape(e["shape"])
    return out


def apply_adapter(weights, adapter_dir):
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    assert cfg["peft_type"] == "LORA" and cfg["bias"] == "none" and not cfg["fan_in_fan_out"], cfg
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    lora = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    w = {k: v.double() for k, v in weights.items()}
    done = 0
    for name, a in lora.items():
        if ".lora_A." not in name:
            continue
        assert name.startswith(PEFT_PREFIX) and name.endswith(".lora_A.weight"), name
        module = name[len(PEFT_PREFIX):-len(".lora_A.weight")]
        b = lora[name.replace(".lora_A.", ".lora_B.")]
        assert a.shape[0] == r and b.shape[1] == r, (name, a.shape, b.shape)
        w[module + ".weight"] = w[module + ".weight"] + scale * (b.double() @ a.double())
        done += 1
    assert done > 0
    return w


def make(out):
    gen = torch.Generator().manual_seed(SEED)
    tokens = torch.randint(0, mm.VOCAB, (T,), generator=gen).tolist()
    np.array(tokens, dtype="<i4").tofile(os.path.join(out, "tokens.bin"))
    w = mm.make_weights(mm.ARCHS["qwen2"], gen)
    mm.write_hf(os.path.join(out, "qwen2-hf-f32"), mm.ARCHS["qwen2"], w, "F32", tokenizer=True)
    a = mm.ARCHS["llama"]
    w = mm.make_weights(a, gen)
    mm.write_hf(os.path.join(out, "llama-hf-f32"), a, w, "F32")
    stored = mm.write_gguf_model(os.path.join(out, "llama-f16.gguf"), a, w, mm.GGML_F16)
    mm.write_hf(os.path.join(out, "llama-f16-as-hf"), a, {k: v.float() for k, v in stored.items()}, "F32")


def ref(arch, model_dir, adapter_dir, out):
    tokens = np.fromfile(os.path.join(os.path.dirname(model_dir.rstrip("/")), "tokens.bin"), dtype="<i4").tolist()
    w = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    if adapter_dir != "-":
        w = apply_adapter(w, adapter_dir)
    a = mm.ARCHS[arch]
    mm.forward(a, w, tokens, a.get("sliding_window", 0)).numpy().astype("<f4").tofile(out)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        ref(*sys.argv[2:6])
