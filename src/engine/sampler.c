/* engine/sampler.c — logit processing and seeded sampling (see sampler.h). */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_PENALTY_WINDOW = 1 << 20 };

typedef struct candidate {
    float logit, p;
    int32_t id;
} candidate;

struct bs_sampler {
    bs_sampler_params p;
    bs_logit_bias *bias; /* owned copy of p.logit_bias */
    int n_vocab;
    uint64_t rng[4];     /* xoshiro256** state */
    int32_t *window;     /* ring of the last penalty_last_n accepted tokens */
    int window_len, window_head;
    int *counts;         /* [n_vocab] occurrences inside the window */
    unsigned *seen;      /* [n_vocab] stamp: token already penalised this call */
    unsigned stamp;
    candidate *cands;    /* [n_vocab] */
};

void sampler_params_default(bs_sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
    p->penalty_last_n = 64;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static double rng_uniform(bs_sampler *s) { return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53; }

static bs_status check_params(const bs_sampler_params *p, int n_vocab, bs_error *err) {
    if (n_vocab <= 0) return bs_fail(err, BS_EINVAL, "sampler: vocab size %d must be positive", n_vocab);
    if (!(p->temperature >= 0) || !isfinite(p->temperature))
        return bs_fail(err, BS_EINVAL, "sampler: temperature %g must be >= 0", p->temperature);
    if (p->top_k < 0) return bs_fail(err, BS_EINVAL, "sampler: top_k %d must be >= 0", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return bs_fail(err, BS_EINVAL, "sampler: top_p %g must be in (0, 1]", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return bs_fail(err, BS_EINVAL, "sampler: min_p %g must be in [0, 1]", p->min_p);
    if (!(p->repetition_penalty > 0) || !isfinite(p->repetition_penalty))
        return bs_fail(err, BS_EINVAL, "sampler: repetition_penalty %g must be > 0", p->repetition_penalty);
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return bs_fail(err, BS_EINVAL, "sampler: presence/frequency penalties must be finite");
    if (p->penalty_last_n < 0 || p->penalty_last_n > MAX_PENALTY_WINDOW)
        return bs_fail(err, BS_EINVAL, "sampler: penalty_last_n %d is outside 0..%d", p->penalty_last_n,
                       MAX_PENALTY_WINDOW);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return bs_fail(err, BS_EINVAL, "sampler: bad logit bias list");
    for (int i = 0; i < p->n_logit_bias; i++) {
        const bs_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return bs_fail(err, BS_EINVAL, "sampler: logit bias token %d is outside the vocabulary (0..%d)",
                           b->token, n_vocab - 1);
        if (isnan(b->bias) || b->bias == INFINITY)
            return bs_fail(err, BS_EINVAL, "sampler: logit bias for token %d must be a number below +inf",
                           b->token);
    }
    return BS_OK;
}

bs_status sampler_open(const bs_sampler_params *p, int n_vocab, bs_sampler **out, bs_error *err) {
    *out = NULL;
    bs_status st = check_params(p, n_vocab, err);
    if (st) return st;
    bs_sampler *s = calloc(1, sizeof *s);
    if (!s) return bs_fail(err, BS_ENOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->bias = malloc(((size_t)p->n_logit_bias + 1) * sizeof *s->bias);
    s->window = malloc(((size_t)p->penalty_last_n + 1) * sizeof *s->window);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->seen = calloc((size_t)n_vocab, sizeof *s->seen);
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    if (!s->bias || !s->window || !s->counts || !s->seen || !s->cands) {
        sampler_close(s);
        return bs_fail(err, BS_ENOMEM, "sampler: out of memory");
    }
    if (p->n_logit_bias) memcpy(s->bias, p->logit_bias, (size_t)p->n_logit_bias * sizeof *s->bias);
    s->p.logit_bias = s->bias;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    *out = s;
    return BS_OK;
}

void sampler_close(bs_sampler *s) {
    if (!s) return;
    free(s->bias);
    free(s->window);
    free(s->counts);
    free(s->seen);
    free(s->cands);
    free(s);
}

void sampler_accept(bs_sampler *s, int32_t token) {
    int cap = s->p.penalty_last_n;
    if (cap == 0 || token < 0 || token >= s->n_vocab) return;
    if (s->window_len == cap) s->counts[s->window[s->window_head]]--;
    else s->window_len++;
    s->window[s->window_head] = token;
    s->window_head = (s->window_head + 1) % cap;
    s->counts[token]++;
}

void sampler_reset(bs_sampler *s) {
    for (int i = 0; i < s->window_len; i++) s->counts[s->window[i]] = 0;
    s->window_len = s->window_head = 0;
}

static void apply_penalties(bs_sampler *s, float *logits) {
    const bs_sampler_params *p = &s->p;
    if (p->repetition_penalty == 1 && p->presence_penalty == 0 && p->frequency_penalty == 0) return;
    if (++s->stamp == 0) { /* wrapped: clear stale stamps */
        memset(s->seen, 0, (size_t)s->n_vocab * sizeof *s->seen);
        s->stamp = 1;
    }
    for (int i = 0; i < s->window_len; i++) {
        int32_t t = s->window[i];
        if (s->seen[t] == s->stamp) continue;
        s->seen[t] = s->stamp;
        float l = logits[t];
        if (p->repetition_penalty != 1) l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
        logits[t] = l - p->presence_penalty - p->frequency_penalty * (float)s->counts[t];
    }
}

/* Descending logit, ties to the lower id, so results never depend on qsort. */
static int cand_before(const candidate *a, const candidate *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}
static int cand_cmp(const void *a, const void *b) {
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* Min-heap (by cand_before) of the k best candidates. */
static void heap_sift_down(candidate *h, int k, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, worst = i;
        if (l < k && cand_before(&h[worst], &h[l])) worst = l;
        if (r < k && cand_before(&h[worst], &h[r])) worst = r;
        if (worst == i) return;
        candidate t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

static int select_top_k(candidate *c, const float *logits, int n, int k) {
    for (int i = 0; i < k; i++) c[i] = (candidate){logits[i], 0, i};
    for (int i = k / 2 - 1; i >= 0; i--) heap_sift_down(c, k, i);
    for (int i = k; i < n; i++) {
        candidate x = {logits[i], 0, i};
        if (cand_before(&x, &c[0])) {
            c[0] = x;
            heap_sift_down(c, k, 0);
        }
    }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
    return k;
}

static int32_t argmax(const float *logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int32_t sampler_sample(bs_sampler *s, float *logits) {
    const bs_sampler_params *p = &s->p;
    int n = s->n_vocab;
    for (int i = 0; i < p->n_logit_bias; i++) logits[p->logit_bias[i].token] += p->logit_bias[i].bias;
    apply_penalties(s, logits);
    if (p->temperature == 0) return argmax(logits, n);

    for (int i = 0; i < n; i++) logits[i] /= p->temperature;
    candidate *c = s->cands;
    int m, sorted = 1;
    if (p->top_k > 0 && p->top_k < n) {
        m = select_top_k(c, logits, n, p->top_k);
    } else {
        for (int i = 0; i < n; i++) c[i] = (candidate){logits[i], 0, i};
        m = n;
        sorted = p->top_p < 1;
        if (sorted) qsort(c, (size_t)n, sizeof *c, cand_cmp);
    }
    float max = c[0].logit;
    for (int i = 1; i < m && !sorted; i++)
        if (c[i].logit > max) max = c[i].logit;
    if (max == -INFINITY) return argmax(logits, n); /* every token banned: nothing to weigh */

    double sum = 0;
    for (int i = 0; i < m; i++) sum += c[i].p = expf(c[i].logit - max);
    if (p->top_p < 1) {
        double cum = 0;
        int keep = m;
        for (int i = 0; i < m; i++) {
            cum += c[i].p;
            if (cum >= p->top_p * sum) {
                keep = i + 1;
                break;
            }
        }
        m = keep;
    }
    if (p->min_p > 0) { /* the best token has p = 1 here */
        int kept = 0;
        for (int i = 0; i < m; i++)
            if (c[i].p >= p->min_p) c[kept++] = c[i];
        m = kept;
    }
    if (m < n) {
        for (int i = 0; i < n; i++) logits[i] = -INFINITY;
        for (int i = 0; i < m; i++) logits[c[i].id] = c[i].logit;
    }
    sum = 0;
    for (int i = 0; i < m; i++) sum += c[i].p;
    double u = rng_uniform(s) * sum, acc = 0;
    for (int i = 0; i < m; i++) {
        acc += c[i].p;
        if (u < acc) return c[i].id;
    }
    return c[m - 1].id;
}
