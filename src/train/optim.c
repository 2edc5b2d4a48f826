/* train/optim.c — schedule, clipping and AdamW (see optim.h). */
#include "train/optim.h"

#include <math.h>

float lr_at(bs_lr_schedule schedule, float lr, int step, int warmup, int total) {
    if (step < warmup) return (float)(lr * (double)step / warmup);
    double rest = total - warmup > 1 ? total - warmup : 1, f = 1;
    switch (schedule) {
    case BS_SCHEDULE_CONSTANT: f = 1; break;
    case BS_SCHEDULE_LINEAR: f = (total - step) / rest; break;
    case BS_SCHEDULE_COSINE: f = 0.5 * (1 + cos(M_PI * (step - warmup) / rest)); break;
    }
    return (float)(lr * (f > 0 ? f : 0));
}

void grad_sumsq(const float *g, size_t n, double *sumsq) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    *sumsq += s;
}

void grad_clip(float *g, size_t n, double norm, float max_norm) {
    double coef = max_norm / (norm + 1e-6);
    if (coef >= 1) return;
    for (size_t i = 0; i < n; i++) g[i] = (float)(g[i] * coef);
}

void adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int t) {
    double bc1 = 1 - pow(beta1, t), bc2_sqrt = sqrt(1 - pow(beta2, t));
    float step_size = (float)(lr / bc1), decay = 1 - lr * weight_decay;
    for (size_t i = 0; i < n; i++) {
        m[i] = beta1 * m[i] + (1 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
        float denom = (float)(sqrtf(v[i]) / bc2_sqrt) + eps;
        p[i] = p[i] * decay - step_size * m[i] / denom;
    }
}
