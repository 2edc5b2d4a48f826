/* kernels/ops.c — the element-wise and reduction ops of a transformer layer:
 * RMSNorm, rotary embedding, SwiGLU and the f32 dot product (attention's
 * softmax is online, in attention.c). */
#include <math.h>

#include "kernels/isa.h"
#include "kernels/kernels.h"

float kern_dot_f32(const float *a, const float *b, int n) { return kern_isa()->dot(a, b, n); }

void kern_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    float ss = kern_isa()->dot(x, x, n);
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* The angle is the f32 product pos*inv_freq[i], as Hugging Face computes it,
 * so long positions round the same way the reference does. */
void kern_rope(float *x, int n_heads, int head_dim, int pos, const float *inv_freq, int neox) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float angle = (float)pos * inv_freq[i];
        float c = cosf(angle), s = sinf(angle);
        int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * head_dim;
            float va = v[a], vb = v[b];
            v[a] = va * c - vb * s;
            v[b] = va * s + vb * c;
        }
    }
}

void kern_swiglu(float *out, const float *gate, const float *up, int n) { kern_isa()->swiglu(out, gate, up, n); }
