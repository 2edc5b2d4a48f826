#!/usr/bin/python3
"""tests/oracle/make_model.py OUTDIR -- the engine's independent reference.

Writes tiny random-weight models of each supported architecture as Hugging
Face directories (config.json + safetensors, written by hand) and as GGUF v3
files (a minimal writer below, laid out as llama.cpp's converter does: llama
Q/K rows permuted for adjacent-pair RoPE, llama3 scaling as rope_freqs.weight),
then runs a plain PyTorch forward of each (float64, written from the
transformers modeling code's math, no transformers import) on the stored,
rounded weights and saves the logits at every position.

OUTDIR/tokens.bin       int32[T] input ids
OUTDIR/manifest.txt     one line per case: NAME MODEL_PATH REF_PATH
OUTDIR/<case>.ref       float32[T][vocab] reference logits
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

T = 300          # tokens; more than one 256-token prefill chunk
VOCAB = 320
SEED = 1234

ARCHS = {
    # Llama 3 style: llama3 rope scaling (original context 64 so the 16-dim
    # head's frequencies fall in all three bands), untied head.
    "llama": dict(cls="LlamaForCausalLM", model_type="llama", dim=64, layers=2, heads=4, kv_heads=2,
                  head_dim=16, ffn=128, theta=10000.0, eps=1e-5, tied=False,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    # Llama 2 style with the optional attention_bias / mlp_bias flags set, tied head.
    "llama_bias": dict(cls="LlamaForCausalLM", model_type="llama", dim=64, layers=2, heads=4, kv_heads=4,
                       head_dim=16, ffn=96, theta=10000.0, eps=1e-6, tied=True, attention_bias=True,
                       mlp_bias=True),
    # Mistral v0.1 style sliding window (HF only: llama.cpp's llama arch has none).
    "mistral": dict(cls="MistralForCausalLM", model_type="mistral", dim=64, layers=2, heads=4, kv_heads=1,
                    head_dim=16, ffn=96, theta=10000.0, eps=1e-5, tied=False, sliding_window=24),
    "qwen2": dict(cls="Qwen2ForCausalLM", model_type="qwen2", dim=64, layers=2, heads=4, kv_heads=2,
                  head_dim=16, ffn=128, theta=1000000.0, eps=1e-6, tied=True, qkv_bias=True),
    # head_dim 32 with 4 heads: q is 128 wide on a 64-wide model; rope in the
    # newer rope_parameters form.
    "qwen3": dict(cls="Qwen3ForCausalLM", model_type="qwen3", dim=64, layers=2, heads=4, kv_heads=2,
                  head_dim=32, ffn=128, theta=1000000.0, eps=1e-6, tied=True, qk_norm=True,
                  rope_parameters=True),
}

# ---------------------------------------------------------------- weights


def make_weights(a, gen):
    """HF-named float32 master weights."""
    def mat(rows, cols, gain=1.0):
        return torch.randn(rows, cols, generator=gen, dtype=torch.float32) * (gain / math.sqrt(cols))

    def norm(n):
        return 1.0 + 0.2 * torch.randn(n, generator=gen, dtype=torch.float32)

    def bias(n):
        return 0.5 * torch.randn(n, generator=gen, dtype=torch.float32)

    D, hd, F = a["dim"], a["head_dim"], a["ffn"]
    qd, kvd = a["heads"] * hd, a["kv_heads"] * hd
    w = {"model.embed_tokens.weight": torch.randn(VOCAB, D, generator=gen, dtype=torch.float32)}
    for l in range(a["layers"]):
        p = "model.layers.%d." % l
        w[p + "input_layernorm.weight"] = norm(D)
        # Larger q/k gain so attention is far from uniform.
        w[p + "self_attn.q_proj.weight"] = mat(qd, D, 3.0)
        w[p + "self_attn.k_proj.weight"] = mat(kvd, D, 3.0)
        w[p + "self_attn.v_proj.weight"] = mat(kvd, D)
        w[p + "self_attn.o_proj.weight"] = mat(D, qd)
        if a.get("qkv_bias") or a.get("attention_bias"):
            w[p + "self_attn.q_proj.bias"] = bias(qd)
            w[p + "self_attn.k_proj.bias"] = bias(kvd)
            w[p + "self_attn.v_proj.bias"] = bias(kvd)
        if a.get("attention_bias"):
            w[p + "self_attn.o_proj.bias"] = bias(D)
        if a.get("mlp_bias"):
            w[p + "mlp.gate_proj.bias"] = bias(F)
            w[p + "mlp.up_proj.bias"] = bias(F)
            w[p + "mlp.down_proj.bias"] = bias(D)
        if a.get("qk_norm"):
            w[p + "self_attn.q_norm.weight"] = norm(hd)
            w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "post_attention_layernorm.weight"] = norm(D)
        w[p + "mlp.gate_proj.weight"] = mat(F, D)
        w[p + "mlp.up_proj.weight"] = mat(F, D)
        w[p + "mlp.down_proj.weight"] = mat(D, F)
    w["model.norm.weight"] = norm(D)
    if not a["tied"]:
        w["lm_head.weight"] = mat(VOCAB, D, 4.0)
    return w


def round_bf16(t):
    return t.to(torch.bfloat16).to(torch.float32)


def round_f16(t):
    return t.to(torch.float16).to(torch.float32)


def q8_0(t):
    """llama.cpp Q8_0 over rows: (block bytes, dequantized float32 tensor)."""
    x = t.numpy().astype(np.float32).reshape(-1, 32)
    d = np.abs(x).max(axis=1) / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0).astype(np.float32)
    q = np.clip(np.sign(x * inv[:, None]) * np.floor(np.abs(x * inv[:, None]) + 0.5), -127, 127).astype(np.int8)
    d16 = d.astype(np.float16)
    blocks = np.zeros(x.shape[0], dtype=[("d", "<f2"), ("q", "i1", 32)])
    blocks["d"] = d16
    blocks["q"] = q
    deq = (q.astype(np.float32) * d16.astype(np.float32)[:, None]).reshape(t.shape)
    return blocks.tobytes(), torch.from_numpy(deq)

def q4_k(t):
    """llama.cpp Q4_K over rows (256-weight blocks of 8 sub-blocks, each
    y = d*sc*q - dmin*m with 6-bit sc, m and 4-bit q): (block bytes,
    dequantized float32 tensor).  Plain min/max fit, no error search."""
    x = t.numpy().astype(np.float32).reshape(-1, 8, 32)
    mn = np.maximum(0, -x.min(axis=2))                      # [blocks][8] subtracted offsets
    sc = (x.max(axis=2) + mn) / 15
    d = (sc.max(axis=1) / 63).astype(np.float16)
    dmin = (mn.max(axis=1) / 63).astype(np.float16)
    df, mf = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    isc = np.clip(np.round(np.divide(sc, df, out=np.zeros_like(sc), where=df > 0)), 0, 63).astype(np.uint8)
    imn = np.clip(np.round(np.divide(mn, mf, out=np.zeros_like(mn), where=mf > 0)), 0, 63).astype(np.uint8)
    d1 = (df * isc)[:, :, None]
    m1 = (mf * imn)[:, :, None]
    q = np.clip(np.round(np.divide(x + m1, d1, out=np.zeros_like(x), where=d1 > 0)), 0, 15).astype(np.uint8)
    scales = np.zeros((x.shape[0], 12), dtype=np.uint8)
    scales[:, 0:4] = isc[:, 0:4] | ((isc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = imn[:, 0:4] | ((imn[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (isc[:, 4:8] & 0xF) | ((imn[:, 4:8] & 0xF) << 4)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(-1, 128)   # 64-weight chunks: low, high nibbles
    blocks = np.zeros(x.shape[0], dtype=[("d", "<f2"), ("dmin", "<f2"), ("s", "u1", 12), ("q", "u1", 128)])
    blocks["d"], blocks["dmin"], blocks["s"], blocks["q"] = d, dmin, scales, qs
    deq = (d1 * q.astype(np.float32) - m1).reshape(t.shape)
    return blocks.tobytes(), torch.from_numpy(deq)

# ---------------------------------------------------------------- safetensors


def st_bytes(t, dtype):
    if dtype == "F32":
        return t.contiguous().numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.contiguous().numpy().astype("<f2").tobytes()
    return t.contiguous().to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()


def write_safetensors(path, tensors, dtype):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        b = st_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def hf_config(a):
    c = {"architectures": [a["cls"]], "model_type": a["model_type"], "vocab_size": VOCAB,
         "hidden_size": a["dim"], "intermediate_size": a["ffn"], "num_hidden_layers": a["layers"],
         "num_attention_heads": a["heads"], "num_key_value_heads": a["kv_heads"],
         "head_dim": a["head_dim"], "hidden_act": "silu", "max_position_embeddings": 512,
         "rms_norm_eps": a["eps"], "tie_word_embeddings": a["tied"], "bos_token_id": 1,
         "eos_token_id": 2, "torch_dtype": "float32"}
    if a.get("rope_parameters"):
        c["rope_parameters"] = {"rope_type": "default", "rope_theta": a["theta"]}
    else:
        c["rope_theta"] = a["theta"]
        c["rope_scaling"] = a.get("rope_scaling")
    if a["model_type"] == "llama":
        c["attention_bias"] = bool(a.get("attention_bias"))
        c["mlp_bias"] = bool(a.get("mlp_bias"))
    if a["model_type"] == "mistral":
        c["sliding_window"] = a["sliding_window"]
    if a["model_type"] in ("qwen2", "qwen3"):
        c["use_sliding_window"] = False
    return c


def bytes_to_unicode():
    """GPT-2's printable stand-ins for the 256 byte values."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_tokenizer(dirpath):
    """A byte-level BPE tokenizer.json without merges: token id = byte value."""
    vocab = {ch: b for b, ch in bytes_to_unicode().items()}
    vocab["<|endoftext|>"] = 256
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": 256, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}],
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": True},
           "post_processor": None, "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "vocab": vocab, "merges": []}}
    with open(os.path.join(dirpath, "tokenizer.json"), "w") as f:
        json.dump(tok, f)


def write_hf(dirpath, a, weights, dtype, shards=1, tokenizer=False):
    os.makedirs(dirpath, exist_ok=True)
    if tokenizer:
        write_tokenizer(dirpath)
    with open(os.path.join(dirpath, "config.json"), "w") as f:
        json.dump(hf_config(a), f, indent=2)
    with open(os.path.join(dirpath, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": [2, 3]}, f)
    names = list(weights)
    if shards == 1:
        write_safetensors(os.path.join(dirpath, "model.safetensors"), weights, dtype)
        return
    weight_map = {}
    per = (len(names) + shards - 1) // shards
    for s in range(shards):
        fname = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        part = {n: weights[n] for n in names[s * per:(s + 1) * per]}
        write_safetensors(os.path.join(dirpath, fname), part, dtype)
        weight_map.update({n: fname for n in part})
    with open(os.path.join(dirpath, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)

# ---------------------------------------------------------------- GGUF

GGML_F32, GGML_F16, GGML_Q8_0, GGML_Q4_K = 0, 1, 8, 12
GT_I32, GT_U32, GT_F32, GT_STRING, GT_ARRAY = 5, 4, 6, 8, 9


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, kvs, tensors, align=32):
    """kvs: [(key, gguf_type, value)]; tensors: [(name, ggml_type, shape, bytes)]."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)))
    enc = {GT_I32: lambda v: struct.pack("<i", v), GT_U32: lambda v: struct.pack("<I", v),
           GT_F32: lambda v: struct.pack("<f", v), GT_STRING: gguf_str}
    for key, typ, val in kvs:
        out += gguf_str(key) + struct.pack("<I", typ)
        if typ == GT_ARRAY:   # val = (element type, list)
            out += struct.pack("<IQ", val[0], len(val[1])) + b"".join(enc[val[0]](v) for v in val[1])
        else:
            out += enc[typ](val)
    off = 0
    for name, typ, shape, data in tensors:
        out += gguf_str(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape))  # innermost first
        out += struct.pack("<IQ", typ, off)
        off += len(data) + (-len(data) % align)
    out += b"\0" * (-len(out) % align)
    for _, _, _, data in tensors:
        out += data + b"\0" * (-len(data) % align)
    with open(path, "wb") as f:
        f.write(out)


def permute(w, n_head):
    """convert_hf_to_gguf LlamaModel.permute: rotate-half rows -> adjacent pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight", "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.bias": "attn_output.bias",
    "mlp.gate_proj.bias": "ffn_gate.bias", "mlp.up_proj.bias": "ffn_up.bias", "mlp.down_proj.bias": "ffn_down.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf):
    if hf.startswith("model.layers."):
        l, rest = hf[len("model.layers."):].split(".", 1)
        return "blk.%s.%s" % (l, GGUF_NAMES[rest])
    return GGUF_NAMES[hf]


def llama3_factors(a):
    s, hd = a["rope_scaling"], a["head_dim"]
    lo_wl = s["original_max_position_embeddings"] / s["low_freq_factor"]
    hi_wl = s["original_max_position_embeddings"] / s["high_freq_factor"]
    out = []
    for i in range(0, hd, 2):
        freq = 1.0 / a["theta"] ** (i / hd)
        wl = 2 * math.pi / freq
        if wl < hi_wl:
            out.append(1.0)
        elif wl > lo_wl:
            out.append(s["factor"])
        else:
            sm = (s["original_max_position_embeddings"] / wl - s["low_freq_factor"]) / (
                s["high_freq_factor"] - s["low_freq_factor"])
            out.append(1.0 / ((1 - sm) / s["factor"] + sm))
    return torch.tensor(out, dtype=torch.float32)


def write_gguf_model(path, a, weights, qtype, tokenizer=False):
    """Returns the weights as the file stores them, back in HF layout."""
    arch = "llama" if a["model_type"] in ("llama", "mistral") else a["model_type"]
    kvs = [("general.architecture", GT_STRING, arch), ("general.name", GT_STRING, "oracle"),
           ("general.file_type", GT_U32, {GGML_F16: 1, GGML_Q8_0: 7, GGML_Q4_K: 15}[qtype]),
           ("%s.context_length" % arch, GT_U32, 512), ("%s.embedding_length" % arch, GT_U32, a["dim"]),
           ("%s.block_count" % arch, GT_U32, a["layers"]),
           ("%s.feed_forward_length" % arch, GT_U32, a["ffn"]),
           ("%s.attention.head_count" % arch, GT_U32, a["heads"]),
           ("%s.attention.head_count_kv" % arch, GT_U32, a["kv_heads"]),
           ("%s.attention.key_length" % arch, GT_U32, a["head_dim"]),
           ("%s.attention.value_length" % arch, GT_U32, a["head_dim"]),
           ("%s.attention.layer_norm_rms_epsilon" % arch, GT_F32, a["eps"]),
           ("%s.rope.freq_base" % arch, GT_F32, a["theta"]),
           ("%s.rope.dimension_count" % arch, GT_U32, a["head_dim"])]
    if qtype in (GGML_Q8_0, GGML_Q4_K):
        kvs.append(("general.quantization_version", GT_U32, 2))
    if tokenizer:   # the byte-level vocabulary of write_tokenizer, as llama.cpp stores it
        b2u = bytes_to_unicode()
        kvs += [("tokenizer.ggml.model", GT_STRING, "gpt2"), ("tokenizer.ggml.pre", GT_STRING, "qwen2"),
                ("tokenizer.ggml.tokens", GT_ARRAY, (GT_STRING, [b2u[b] for b in range(256)] + ["<|endoftext|>"])),
                ("tokenizer.ggml.token_type", GT_ARRAY, (GT_I32, [1] * 256 + [3])),
                ("tokenizer.ggml.merges", GT_ARRAY, (GT_STRING, [])),
                ("tokenizer.ggml.eos_token_id", GT_U32, 256)]
    tensors, stored = [], {}
    for name, t in weights.items():
        tf = t
        if arch == "llama" and (".q_proj." in name or ".k_proj." in name):
            tf = permute(t, a["heads"] if ".q_proj." in name else a["kv_heads"])
        # Rounding is per element and Q8_0 per row, so both commute with the row permutation.
        if t.dim() == 1:
            data, typ, back = tf.numpy().astype("<f4").tobytes(), GGML_F32, t
        elif qtype == GGML_F16:
            data, typ, back = tf.to(torch.float16).numpy().astype("<f2").tobytes(), GGML_F16, round_f16(t)
        elif qtype == GGML_Q4_K:
            data, typ, back = q4_k(tf)[0], GGML_Q4_K, q4_k(t)[1]
        else:
            data, typ, back = q8_0(tf)[0], GGML_Q8_0, q8_0(t)[1]
        stored[name] = back
        tensors.append((gguf_name(name), typ, list(t.shape), data))
    if a.get("rope_scaling"):
        tensors.append(("rope_freqs.weight", GGML_F32, [a["head_dim"] // 2],
                        llama3_factors(a).numpy().astype("<f4").tobytes()))
    write_gguf(path, kvs, tensors)
    return stored

# ---------------------------------------------------------------- reference forward


def inv_freq(a):
    hd = a["head_dim"]
    f = 1.0 / (a["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    s = a.get("rope_scaling")
    if s:
        orig, lo, hi, factor = (s["original_max_position_embeddings"], s["low_freq_factor"],
                                s["high_freq_factor"], s["factor"])
        wl = 2 * math.pi / f
        scaled = torch.where(wl > orig / lo, f / factor, f)
        smooth = (orig / wl - lo) / (hi - lo)
        medium = (wl >= orig / hi) & (wl <= orig / lo)
        f = torch.where(medium, (1 - smooth) * f / factor + smooth * f, scaled)
    return f


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def q8_activations(x):
    """x as llama.cpp-style int8 activations see it: per block of 32 along the
    last dim, d = max|x| / 127 and x ~= d * round(x / d) (half to even).  The
    engine multiplies block-quantized weights with activations quantized this
    way (kernels/qdot.h), so the reference must too."""
    blocks = x.reshape(*x.shape[:-1], -1, 32)
    d = blocks.abs().amax(-1, keepdim=True) / 127
    q = torch.where(d > 0, torch.round(blocks / torch.where(d > 0, d, torch.ones_like(d))), torch.zeros_like(blocks))
    return (q * d).reshape(x.shape)


def forward(a, w, tokens, window, delta=None, act_q8=False):
    """Logits [T][vocab] in float64 from HF-layout weights.  Differentiable
    (train_ref.py runs autograd through it); delta(module, inp), when given,
    is added to every linear projection's output (LoRA).  act_q8 quantizes
    the input of every weight matmul (block-quantized GGUF weights)."""
    w = {k: v.double() for k, v in w.items()}
    act = q8_activations if act_q8 else (lambda t: t)
    n, H, KV, hd, eps = len(tokens), a["heads"], a["kv_heads"], a["head_dim"], a["eps"]
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv_freq(a)[None, :]
    cos = torch.cat((ang.cos(), ang.cos()), -1)[:, None, :]
    sin = torch.cat((ang.sin(), ang.sin()), -1)[:, None, :]
    i = torch.arange(n)
    allowed = i[None, :] <= i[:, None]
    if window:
        allowed &= (i[:, None] - i[None, :]) < window
    for l in range(a["layers"]):
        p = "model.layers.%d." % l

        def lin(name, inp):
            y = act(inp) @ w[p + name + ".weight"].T
            b = w.get(p + name + ".bias")
            if delta is not None:
                y = y + delta(p + name, inp)
            return y if b is None else y + b

        h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
        q = lin("self_attn.q_proj", h).view(n, H, hd)
        k = lin("self_attn.k_proj", h).view(n, KV, hd)
        v = lin("self_attn.v_proj", h).view(n, KV, hd)
        if a.get("qk_norm"):
            q = rmsnorm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hd)
        scores = scores.masked_fill(~allowed[None], float("-inf"))
        att = torch.einsum("hts,shd->thd", torch.softmax(scores, -1), v).reshape(n, H * hd)
        x = x + lin("self_attn.o_proj", att)
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        x = x + lin("mlp.down_proj", torch.nn.functional.silu(lin("mlp.gate_proj", h)) * lin("mlp.up_proj", h))
    x = rmsnorm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return act(x) @ head.T

# ---------------------------------------------------------------- main


def main():
    out = sys.argv[1]
    gen = torch.Generator().manual_seed(SEED)
    tokens = torch.randint(0, VOCAB, (T,), generator=gen).tolist()
    np.array(tokens, dtype="<i4").tofile(os.path.join(out, "tokens.bin"))
    manifest = []

    def case(name, model_path, a, stored, window, act_q8=False):
        ref = os.path.join(out, name + ".ref")
        forward(a, stored, tokens, window, act_q8=act_q8).numpy().astype("<f4").tofile(ref)
        manifest.append("%s %s %s" % (name, model_path, ref))

    for arch, a in ARCHS.items():
        w = make_weights(a, gen)
        window = a.get("sliding_window", 0)
        if arch in ("llama", "llama_bias", "qwen2"):
            d = os.path.join(out, arch + "-hf-f32")
            write_hf(d, a, w, "F32", tokenizer=arch == "qwen2")
            case(arch + "-hf-f32", d, a, w, window)
            if arch == "qwen2":
                d = os.path.join(out, arch + "-hf-f16")
                write_hf(d, a, w, "F16", tokenizer=True)
                case(arch + "-hf-f16", d, a, {k: round_f16(v) for k, v in w.items()}, window)
        else:
            d = os.path.join(out, arch + "-hf-bf16")
            write_hf(d, a, w, "BF16")
            case(arch + "-hf-bf16", d, a, {k: round_bf16(v) for k, v in w.items()}, window)
        if arch == "llama":
            d = os.path.join(out, "llama-hf-sharded")
            write_hf(d, a, w, "F32", shards=3)
            case("llama-hf-sharded", d, a, w, window)
            path = os.path.join(out, "llama-q8_0.gguf")
            case("llama-gguf-q8_0", path, a, write_gguf_model(path, a, w, GGML_Q8_0), 0, act_q8=True)
        path = os.path.join(out, arch + "-f16.gguf")
        case(arch + "-gguf-f16", path, a, write_gguf_model(path, a, w, GGML_F16, tokenizer=arch == "qwen2"), 0)
    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
