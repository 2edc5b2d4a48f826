/* reward/similarity.c — text_similarity's metrics, each in [0, 1].
 *
 * fuzzy_match: rapidfuzz's fuzz.ratio / 100 on Unicode code points, without
 *   preprocessing: 2·LCS / (|a| + |b|), LCS = longest common subsequence
 *   (the normalized Indel similarity); two empty strings give 1.
 * The word metrics tokenize as Google's rouge-score does (no stemming):
 *   lower-case ASCII, every byte that is not [a-z0-9] separates tokens.
 * bleu: sentence BLEU-4 as NLTK's sentence_bleu without smoothing: the
 *   geometric mean of the clipped n-gram precisions p1..p4 with weights 1/4,
 *   times the brevity penalty exp(1 − r/c) when c < r (c, r = candidate and
 *   reference lengths); 0 when any p_n is 0 (so also when c < 4).
 * gleu: Google-BLEU as NLTK's sentence_gleu: over all 1..4-grams, matches =
 *   Σ min(count_c, count_r); min(matches / Σcount_c, matches / Σcount_r); 0
 *   when either side has no n-grams.
 * rouge_N: F1 of clipped N-gram overlap (rouge-score's fmeasure).
 * rouge_l: F1 of LCS over tokens: P = LCS/c, R = LCS/r, 2PR/(P+R).
 * Both-empty word metrics give 0, as rouge-score does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reward/reward_impl.h"

/* UTF-8 to code points (an invalid byte counts as one code point). */
static int decode(const char *s, unsigned **out) {
    size_t n = strlen(s);
    unsigned *cp = malloc((n + 1) * sizeof *cp);
    if (!cp) return -1;
    int k = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
        if (i + (size_t)len > n) len = 1;
        unsigned v = len == 1 ? c : c & (0x7Fu >> len);
        for (int j = 1; j < len; j++) v = (v << 6) | ((unsigned char)s[i + (size_t)j] & 0x3Fu);
        cp[k++] = v;
        i += (size_t)len;
    }
    *out = cp;
    return k;
}

/* Length of the longest common subsequence of a[0..na) and b[0..nb), whose
 * elements eq compares; -1 when out of memory.  One row of the DP table. */
typedef int (*eq_fn)(const void *a, int i, const void *b, int j);

static int lcs(const void *a, int na, const void *b, int nb, eq_fn eq) {
    int *row = calloc((size_t)nb + 1, sizeof *row);
    if (!row) return -1;
    for (int i = 1; i <= na; i++) {
        int diag = 0;
        for (int j = 1; j <= nb; j++) {
            int up = row[j];
            row[j] = eq(a, i - 1, b, j - 1) ? diag + 1 : (row[j - 1] > up ? row[j - 1] : up);
            diag = up;
        }
    }
    int r = row[nb];
    free(row);
    return r;
}

static int eq_cp(const void *a, int i, const void *b, int j) { return ((const unsigned *)a)[i] == ((const unsigned *)b)[j]; }

static double fuzzy(const char *x, const char *y) {
    unsigned *a = NULL, *b = NULL;
    int na = decode(x, &a), nb = decode(y, &b);
    double r = NAN;
    if (na >= 0 && nb >= 0) {
        int l = na + nb == 0 ? 0 : lcs(a, na, b, nb, eq_cp);
        if (l >= 0) r = na + nb == 0 ? 1.0 : 2.0 * l / (na + nb);
    }
    free(a);
    free(b);
    return r;
}

/* ---- word metrics */

typedef struct tokens {
    char **t;
    int n;
} tokens;

static void tokens_free(tokens *t) {
    for (int i = 0; i < t->n; i++) free(t->t[i]);
    free(t->t);
}

static int tokenize(const char *s, tokens *out) {
    out->t = NULL;
    out->n = 0;
    size_t len = strlen(s);
    out->t = malloc((len / 2 + 1) * sizeof *out->t);
    if (!out->t) return -1;
    for (size_t i = 0; i < len;) {
        while (i < len && !((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            i++;
        size_t b = i;
        while (i < len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            i++;
        if (i == b) break;
        char *w = malloc(i - b + 1);
        if (!w) {
            tokens_free(out);
            return -1;
        }
        for (size_t k = b; k < i; k++) w[k - b] = (char)((s[k] >= 'A' && s[k] <= 'Z') ? s[k] + 32 : s[k]);
        w[i - b] = 0;
        out->t[out->n++] = w;
    }
    return 0;
}

static int ngram_eq(const tokens *a, int i, const tokens *b, int j, int n) {
    for (int k = 0; k < n; k++)
        if (strcmp(a->t[i + k], b->t[j + k]) != 0) return 0;
    return 1;
}

/* Σ over distinct n-grams g of c: min(count_c(g), count_r(g)) — the clipped
 * overlap.  Quadratic, which is fine for reward-sized texts. */
static long overlap(const tokens *c, const tokens *r, int n) {
    long total = 0;
    for (int i = 0; i + n <= c->n; i++) {
        int seen = 0;
        for (int k = 0; k < i && !seen; k++) seen = ngram_eq(c, k, c, i, n);
        if (seen) continue;
        long cc = 0, rc = 0;
        for (int k = i; k + n <= c->n; k++) cc += ngram_eq(c, k, c, i, n);
        for (int k = 0; k + n <= r->n; k++) rc += ngram_eq(r, k, c, i, n);
        total += cc < rc ? cc : rc;
    }
    return total;
}

static int count_ngrams(const tokens *t, int n) { return t->n >= n ? t->n - n + 1 : 0; }

static double f1(double match, double nc, double nr) {
    if (nc == 0 || nr == 0 || match == 0) return 0;
    double p = match / nc, r = match / nr;
    return 2 * p * r / (p + r);
}

static int eq_tok(const void *a, int i, const void *b, int j) {
    return strcmp(((const tokens *)a)->t[i], ((const tokens *)b)->t[j]) == 0;
}

static double word_metric(const char *metric, const tokens *c, const tokens *r) {
    if (strcmp(metric, "bleu") == 0) {
        if (c->n == 0) return 0;
        double logsum = 0;
        for (int n = 1; n <= 4; n++) {
            long m = overlap(c, r, n);
            if (m == 0) return 0;
            logsum += 0.25 * log((double)m / count_ngrams(c, n));
        }
        double bp = c->n < r->n ? exp(1.0 - (double)r->n / c->n) : 1.0;
        return bp * exp(logsum);
    }
    if (strcmp(metric, "gleu") == 0) {
        long m = 0, nc = 0, nr = 0;
        for (int n = 1; n <= 4; n++) {
            m += overlap(c, r, n);
            nc += count_ngrams(c, n);
            nr += count_ngrams(r, n);
        }
        if (nc == 0 || nr == 0) return 0;
        double p = (double)m / nc, rc = (double)m / nr;
        return p < rc ? p : rc;
    }
    if (strcmp(metric, "rouge_l") == 0) {
        int l = lcs(c, c->n, r, r->n, eq_tok);
        return l < 0 ? NAN : f1(l, c->n, r->n);
    }
    if (strncmp(metric, "rouge_", 6) == 0 && metric[6] >= '1' && metric[6] <= '5' && !metric[7]) {
        int n = metric[6] - '0';
        return f1((double)overlap(c, r, n), count_ngrams(c, n), count_ngrams(r, n));
    }
    return NAN;
}

double reward_similarity(const char *metric, const char *input, const char *reference) {
    if (strcmp(metric, "fuzzy_match") == 0) return fuzzy(input, reference);
    tokens c, r;
    if (tokenize(input, &c) != 0) return NAN;
    if (tokenize(reference, &r) != 0) {
        tokens_free(&c);
        return NAN;
    }
    double v = word_metric(metric, &c, &r);
    tokens_free(&c);
    tokens_free(&r);
    return v;
}
