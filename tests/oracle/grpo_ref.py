#!/usr/bin/python3
"""tests/oracle/grpo_ref.py OUTDIR -- the GRPO loss's independent reference.

A tiny one-layer llama (make_model.py) with LoRA on every linear layer,
P = 3 prompts x G = 3 completions, and the GRPO loss written the way TRL's
GRPOTrainer computes it (nanmean/nanstd advantages, torch.min of the
clipped surrogates, k3 KL, the three reductions), differentiated by
autograd in float64 with respect to the LoRA A/B.

OUTDIR/model/         the model (HF safetensors, f32)
OUTDIR/lora.init      named tensors: the LoRA A/B to start from (B non-zero)
OUTDIR/batch.bin      int32 N, int32 lengths[N], int32 truncated[N], int32 tokens[sum],
                      float32 rewards[N], float32 old_logp[sum], float32 ref_logp[sum], float32 logp[sum]
                      (per-token arrays indexed like the trainer's loss_mask; [b][0] = 0)
OUTDIR/manifest.txt   one line per case: NAME LOSS_TYPE SCALE TRUNCATION
OUTDIR/<case>.grad    named tensors: dLoss/d(A, B)
OUTDIR/<case>.loss    float64 loss, kl, clip_low, clip_high

Named tensors as train_ref.py writes them.  The constants below are
repeated in tests/train/test_grpo.c, which also runs every case split into
two micro-batches (sequences [0, SPLIT) and [SPLIT, N)) and compares the
accumulated gradient with the same unsplit reference: the reductions'
denominators belong to the whole step.  grpo_loss(..., rows=...) checks
here that the two halves' losses, normalised that way, add up to the
unsplit loss.
"""
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model as mm  # noqa: E402
import train_ref as tr  # noqa: E402

P, G, PROMPT, MAX_COMPLETION = 3, 3, 4, 6
COMPLETIONS = (3, 6, 2, 5, 4, 6, 2, 3, 4)      # 6 = MAX_COMPLETION: truncated
REWARDS = (1.0, float("nan"), 0.25, 0.5, 0.5, 0.5, -1.0, 2.0, 0.5)   # an unscorable one, a zero-spread group
RANK, ALPHA = 4, 8.0
BETA, EPSILON, EPSILON_HIGH, TRUNCATED_REWARD = 0.04, 0.2, 0.28, -1.0
CASES = [("grpo", "group", "keep"), ("grpo", "batch", "keep"), ("grpo", "none", "mask"),
         ("dr_grpo", "group", "keep"), ("dr_grpo", "none", "penalize"), ("dapo", "group", "keep"),
         ("dapo", "batch", "mask"), ("dapo", "none", "penalize")]
SEED = 777
SPLIT = 4


def nanstd(x, dim):
    """trl.trainer.utils.nanstd: Bessel-corrected std ignoring NaNs."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    var = torch.nanmean((x - mean) ** 2, dim=dim)
    count = torch.sum(~torch.isnan(x), dim=dim)
    return torch.sqrt(var * count / (count - 1))


def advantages(rewards, truncated, scale, truncation):
    r = rewards.clone()
    if truncation == "penalize":
        r[truncated] = TRUNCATED_REWARD
    grouped = r.view(P, G)
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    adv = grouped - mean
    if scale == "group":
        adv = adv / (nanstd(grouped, 1)[:, None] + 1e-4)
    elif scale == "batch":
        adv = adv / (nanstd(r, 0) + 1e-4)
    return torch.nan_to_num(adv.reshape(-1), nan=0.0)


def grpo_loss(logp, old, ref, mask, adv, loss_type, rows=None):
    """TRL _compute_loss on padded [N][L] completion tensors; with rows (a
    slice), that micro-batch's share of the step's loss: the denominators
    stay the whole step's (sequences for grpo/dr_grpo, tokens for dapo)."""
    rows = rows or slice(0, mask.size(0))
    coef_1 = torch.exp(logp - old)
    coef_2 = torch.clamp(coef_1, 1 - EPSILON, 1 + EPSILON_HIGH)
    per_token_loss = -torch.min(coef_1 * adv[:, None], coef_2 * adv[:, None])
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    per_token_loss = per_token_loss + BETA * kl
    part = (per_token_loss * mask)[rows]
    if loss_type == "grpo":
        loss = (part.sum(-1) / mask[rows].sum(-1).clamp(min=1.0)).sum() / mask.size(0)
    elif loss_type == "dr_grpo":
        loss = part.sum() / (mask.size(0) * MAX_COMPLETION)
    else:
        loss = part.sum() / mask.sum().clamp(min=1.0)
    n = mask.sum().clamp(min=1.0)
    low = ((coef_1 < 1 - EPSILON) & (adv[:, None] < 0)).double()
    high = ((coef_1 > 1 + EPSILON_HIGH) & (adv[:, None] > 0)).double()
    return loss, [(kl * mask).sum() / n, (low * mask).sum() / n, (high * mask).sum() / n]


def main():
    out = sys.argv[1]
    gen = torch.Generator().manual_seed(SEED)
    a = dict(mm.ARCHS["llama"], layers=1)
    w = mm.make_weights(a, gen)
    mm.write_hf(os.path.join(out, "model"), a, w, "F32")
    scale = ALPHA / RANK
    lora, params = {}, {}
    for mod in tr.LINEARS:
        key = "model.layers.0.%s" % mod
        rows, fan_in = w[key + ".weight"].shape
        A = ((torch.rand(RANK, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(fan_in)).float()
        B = (torch.randn(rows, RANK, generator=gen, dtype=torch.float64) * 0.1).float()
        pa, pb = "base_model.model.%s.lora_A.weight" % key, "base_model.model.%s.lora_B.weight" % key
        params[pa] = A.double().requires_grad_()
        params[pb] = B.double().requires_grad_()
        lora[key] = (params[pa], params[pb])
    tr.write_named(os.path.join(out, "lora.init"), params)

    def delta(key, inp):
        A, B = lora[key]
        return scale * (inp @ A.T) @ B.T

    N = P * G
    seqs = [torch.randint(0, mm.VOCAB, (PROMPT + c,), generator=gen).tolist() for c in COMPLETIONS]
    truncated = torch.tensor([c == MAX_COMPLETION for c in COMPLETIONS])

    def token_logps(d):
        """[N][MAX_COMPLETION] log-probs of the completion tokens, zero-padded."""
        rows = []
        for s, c in zip(seqs, COMPLETIONS):
            logits = mm.forward(a, w, s, 0, d)[:-1]
            lp = torch.log_softmax(logits, -1).gather(1, torch.tensor(s[1:])[:, None])[:, 0]
            rows.append(torch.nn.functional.pad(lp[PROMPT - 1:], (0, MAX_COMPLETION - c)))
        return torch.stack(rows)

    mask = torch.tensor([[1.0 if i < c else 0.0 for i in range(MAX_COMPLETION)] for c in COMPLETIONS],
                        dtype=torch.float64)
    with torch.no_grad():
        ref = token_logps(None)
        cur = token_logps(delta)
    # the sampling policy: the current one, perturbed so that ratios reach both clip edges
    old = (cur + 0.4 * torch.randn(cur.shape, generator=gen, dtype=torch.float64)) * mask
    old = old.float().double()

    def per_token(x):
        """Padded [N][MAX_COMPLETION] -> the trainer's layout, float32."""
        return np.concatenate([np.concatenate([np.zeros(PROMPT), x[b, :c].numpy()])
                               for b, c in enumerate(COMPLETIONS)]).astype("<f4")

    with open(os.path.join(out, "batch.bin"), "wb") as f:
        f.write(struct.pack("<i", N))
        f.write(np.array([PROMPT + c for c in COMPLETIONS], dtype="<i4").tobytes())
        f.write(truncated.numpy().astype("<i4").tobytes())
        for s in seqs:
            f.write(np.array(s, dtype="<i4").tobytes())
        f.write(np.array(REWARDS, dtype="<f4").tobytes())
        for x in (old, ref, cur):
            f.write(per_token(x).tobytes())

    rewards = torch.tensor(REWARDS, dtype=torch.float64)
    manifest = []
    for loss_type, scale_rewards, truncation in CASES:
        name = "%s-%s-%s" % (loss_type, scale_rewards, truncation)
        adv = advantages(rewards, truncated, scale_rewards, truncation)
        m = mask.clone()
        if truncation == "mask":
            m[truncated] = 0
        for p in params.values():
            p.grad = None
        logp = token_logps(delta)
        loss, stats = grpo_loss(logp, old, ref, m, adv, loss_type)
        halves = [grpo_loss(logp, old, ref, m, adv, loss_type, rows)[0]
                  for rows in (slice(0, SPLIT), slice(SPLIT, N))]
        assert abs((halves[0] + halves[1]).item() - loss.item()) <= 1e-12 * max(1.0, abs(loss.item())), name
        loss.backward()
        tr.write_named(os.path.join(out, name + ".grad"), {k: p.grad for k, p in params.items()})
        np.array([loss.item()] + [s.item() for s in stats], dtype="<f8").tofile(os.path.join(out, name + ".loss"))
        manifest.append("%s %s %s %s" % (name, loss_type, scale_rewards, truncation))
    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
