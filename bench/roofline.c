/* bench/roofline.c — how close basalt runs to this machine's limits, in one run.
 *
 *   roofline [--threads N] [--bin build/basalt] [--prompt 128] [--gen 32] MODEL...
 *
 * Measures, with N threads (default: every CPU):
 *   - read bandwidth: the library's f32 dot product streamed over 1 GiB;
 *   - peak f32 FMA GFLOP/s (register-only FMA chains, AVX-512 or AVX2), and
 *     peak bf16 dot-product GFLOP/s where the CPU has AVX512_BF16;
 *   - kern_matmul GEMM GFLOP/s at 128 tokens for BF16 and F16 weights of a
 *     Qwen2.5-0.5B FFN shape (4864 x 896);
 * then runs `basalt bench --json` on each MODEL and prints the achieved
 * fractions: decode reads model_bytes per token, so decode t/s x model_bytes
 * / the bandwidth measured around that model's run (just before and after
 * it).  The bandwidth is a best of passes, so decode is the best of its
 * repetitions too (their mean is in the JSON): a shared host's slow moments
 * then weigh on neither side.  Prefill FLOPs per token come from the model's shape (every layer
 * matmul, causal attention, the LM head once per prompt), over the f32
 * FMA peak (F16 and BF16 weights are widened to f32 and FMA'd; the bf16
 * dot-product peak is printed for reference only).  Prints a table, then one
 * JSON line. */
#include <immintrin.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/threadpool.h"
#include "kernels/kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- read bandwidth ------------------------------------------------------ */

typedef struct {
    const float *a, *b;
    long n;
    float sink[256];
} stream_job;

static void stream_thread(void *p, int ith, int nth) {
    stream_job *job = p;
    long begin, end;
    bs_split_range(job->n, ith, nth, 4096, &begin, &end);
    job->sink[ith % 256] += kern_dot_f32(job->a + begin, job->b + begin, (int)(end - begin));
}

/* Best of 9 passes over two 512 MiB arrays: bytes read per second.  Every
 * figure here is a best of many short runs, so a shared machine still shows
 * what it can do when it gets a quiet moment. */
static double read_bandwidth(bs_threadpool *pool) {
    long n = (512L << 20) / sizeof(float);
    float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    for (long i = 0; i < n; i++) a[i] = b[i] = (float)(i & 7);
    stream_job job = {.a = a, .b = b, .n = n};
    double best = 1e30;
    for (int rep = 0; rep < 10; rep++) {
        double t0 = now();
        bs_threadpool_run(pool, stream_thread, &job);
        double dt = now() - t0;
        if (rep > 0 && dt < best) best = dt; /* the first pass warms the TLB */
    }
    free(a);
    free(b);
    return 2.0 * (double)n * sizeof(float) / best;
}

/* ---- peak arithmetic ----------------------------------------------------- */

enum { PEAK_ITERS = 4000000, PEAK_REPS = 12 };

/* 12 independent chains hide the FMA latency on every core we know of. */
__attribute__((target("avx512f"))) static float fma_avx512(long iters) {
    __m512 acc[12], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int j = 0; j < 12; j++) acc[j] = _mm512_set1_ps((float)j);
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) acc[j] = _mm512_fmadd_ps(acc[j], m, c);
    __m512 s = acc[0];
    for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, acc[j]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_avx2(long iters) {
    __m256 acc[12], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int j = 0; j < 12; j++) acc[j] = _mm256_set1_ps((float)j);
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) acc[j] = _mm256_fmadd_ps(acc[j], m, c);
    __m256 s = acc[0];
    for (int j = 1; j < 12; j++) s = _mm256_add_ps(s, acc[j]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

__attribute__((target("avx512f,avx512bf16"))) static float dpbf16_avx512(long iters) {
    __m512 acc[12];
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380);
    for (int j = 0; j < 12; j++) acc[j] = _mm512_set1_ps((float)j);
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
    __m512 s = acc[0];
    for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, acc[j]);
    return _mm512_reduce_add_ps(s);
}

typedef struct {
    int kind; /* 0 f32 FMA, 1 bf16 dot product */
    long iters;
    float sink[256];
} peak_job;

static void peak_thread(void *p, int ith, int nth) {
    (void)nth;
    peak_job *job = p;
    const kern_features *f = kern_cpu_features();
    float r = job->kind == 1 ? dpbf16_avx512(job->iters) : f->avx512f ? fma_avx512(job->iters) : fma_avx2(job->iters);
    job->sink[ith % 256] = r;
}

/* FLOPs per instruction: an FMA is 2 per lane, a bf16 dot product 4 per lane. */
static double peak_gflops(bs_threadpool *pool, int kind) {
    const kern_features *f = kern_cpu_features();
    double lanes = f->avx512f ? 16 : 8, per_insn = kind == 1 ? 4 * lanes : 2 * lanes;
    peak_job job = {.kind = kind, .iters = PEAK_ITERS / 10};
    bs_threadpool_run(pool, peak_thread, &job); /* warm up the clocks */
    job.iters = PEAK_ITERS;
    double best = 1e30;
    for (int rep = 0; rep < PEAK_REPS; rep++) {
        double t0 = now();
        bs_threadpool_run(pool, peak_thread, &job);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return (double)bs_threadpool_size(pool) * PEAK_ITERS * 12 * per_insn / best / 1e9;
}

/* kern_matmul at T tokens on random N x K weights of one type. */
static double gemm_gflops(bs_threadpool *pool, bs_dtype type, int T, int N, int K) {
    size_t row_bytes = bs_dtype_row_bytes(type, K);
    float *x = malloc(sizeof(float) * (size_t)T * K), *y = malloc(sizeof(float) * (size_t)T * N);
    float *row = malloc(sizeof(float) * (size_t)K);
    unsigned char *W = malloc(row_bytes * (size_t)N);
    double best = 1e30;
    if (x && y && row && W) {
        unsigned s = 1;
        for (long i = 0; i < (long)T * K; i++) x[i] = (float)((s = s * 1664525u + 1013904223u) >> 9) / (1 << 23) - 1;
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++) row[k] = (float)((s = s * 1664525u + 1013904223u) >> 9) / (1 << 23) - 1;
            kern_quantize(type, row, W + row_bytes * n, K);
        }
        for (int rep = 0; rep < 12; rep++) {
            double t0 = now();
            kern_matmul(pool, y, x, T, W, type, N, K);
            double dt = now() - t0;
            if (rep > 0 && dt < best) best = dt;
        }
    }
    free(x);
    free(y);
    free(row);
    free(W);
    return 2.0 * T * N * K / best / 1e9;
}

/* ---- the model runs ------------------------------------------------------ */

typedef struct {
    int layers, dim, heads, kv_heads, head_dim, ffn, vocab;
    char wtype[16];
} model_shape;

static int parse_shape(const char *desc, model_shape *s) {
    const char *p = strchr(desc, ':');
    return p && sscanf(p + 1, " %d layers, dim %d, %d heads (%d kv) x %d, ffn %d, vocab %d, %15s weights", &s->layers,
                       &s->dim, &s->heads, &s->kv_heads, &s->head_dim, &s->ffn, &s->vocab, s->wtype) == 8;
}

/* FLOPs per token of a P-token prefill: every layer matmul, attention over
 * (on average) (P + 1) / 2 positions, and the LM head once per prompt. */
static double prefill_flops_per_token(const model_shape *s, int P) {
    double q = (double)s->heads * s->head_dim, kv = (double)s->kv_heads * s->head_dim, d = s->dim;
    double matmuls = 2 * d * (q + 2 * kv) + 2 * q * d + 3 * 2 * d * s->ffn;
    double attention = 2 * 2 * q * (P + 1) / 2.0;
    return s->layers * (matmuls + attention) + 2 * d * s->vocab / P;
}

static json_t *run_bench(const char *bin, const char *model, int threads, int prompt, int gen) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' bench '%s' --prompt-tokens %d --gen-tokens %d --threads %d --reps 5 --json", bin,
             model, prompt, gen, threads);
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    char line[8192];
    json_t *o = NULL;
    while (!o && fgets(line, sizeof line, f)) o = json_loads(line, 0, NULL);
    pclose(f);
    return o;
}

int main(int argc, char **argv) {
    int threads = bs_cpu_count(), prompt = 128, gen = 32;
    const char *bin = "build/basalt";
    int first_model = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bin") && i + 1 < argc)
            bin = argv[++i];
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc)
            prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc)
            gen = atoi(argv[++i]);
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: roofline [--threads N] [--bin BASALT] [--prompt P] [--gen G] MODEL...\n");
            return 2;
        } else {
            first_model = i;
            break;
        }
    }
    bs_threadpool *pool = NULL;
    bs_error err = {0};
    if (bs_threadpool_open(threads, &pool, &err)) {
        fprintf(stderr, "roofline: %s\n", err.msg);
        return 1;
    }
    const kern_features *f = kern_cpu_features();
    double bw = read_bandwidth(pool);
    double fma = peak_gflops(pool, 0), dp = f->avx512bf16 ? peak_gflops(pool, 1) : 0;
    double gemm_bf16 = gemm_gflops(pool, BS_DTYPE_BF16, 128, 4864, 896);
    double gemm_f16 = gemm_gflops(pool, BS_DTYPE_F16, 128, 4864, 896);
    printf("machine: %d threads, kernels %s\n", threads, kern_isa_name());
    printf("  read bandwidth         %8.1f GB/s\n", bw / 1e9);
    printf("  peak f32 FMA           %8.1f GFLOP/s\n", fma);
    if (dp > 0) printf("  peak bf16 dot product  %8.1f GFLOP/s (unused: see kernels/matmul.c)\n", dp);
    printf("  matmul BF16 T=128      %8.1f GFLOP/s (%.0f %% of peak)\n", gemm_bf16, 100 * gemm_bf16 / fma);
    printf("  matmul F16  T=128      %8.1f GFLOP/s (%.0f %% of peak)\n", gemm_f16, 100 * gemm_f16 / fma);

    json_t *out = json_object(), *runs = json_array();
    json_object_set_new(out, "threads", json_integer(threads));
    json_object_set_new(out, "isa", json_string(kern_isa_name()));
    json_object_set_new(out, "read_gb_s", json_real(bw / 1e9));
    json_object_set_new(out, "peak_fma_gflops", json_real(fma));
    json_object_set_new(out, "peak_bf16_gflops", json_real(dp));
    json_object_set_new(out, "gemm_bf16_gflops", json_real(gemm_bf16));
    json_object_set_new(out, "gemm_f16_gflops", json_real(gemm_f16));
    if (first_model < argc)
        printf("\n%-40s %8s %9s %7s %9s %8s %8s %7s\n", "model", "pp t/s", "GFLOP/s", "of peak", "tg best", "GB/s",
               "bw GB/s", "of bw");
    for (int i = first_model; i < argc; i++) {
        /* A shared host's bandwidth drifts by tens of percent within minutes:
         * each model is held against the bandwidth measured around its own
         * run (the mean of just before and just after). */
        double bw_before = read_bandwidth(pool);
        json_t *o = run_bench(bin, argv[i], threads, prompt, gen);
        double bw_model = (bw_before + read_bandwidth(pool)) / 2;
        model_shape s;
        const char *desc = o ? json_string_value(json_object_get(o, "description")) : NULL;
        if (!desc || !parse_shape(desc, &s)) {
            printf("%-40s (bench failed)\n", argv[i]);
            json_decref(o);
            continue;
        }
        double pp = json_real_value(json_object_get(o, "pp_tok_s"));
        double tg_mean = json_real_value(json_object_get(o, "tg_tok_s")), tg = 0;
        json_t *rep;
        size_t k;
        json_array_foreach(json_object_get(o, "tg_tok_s_runs"), k, rep) if (json_real_value(rep) > tg) tg = json_real_value(rep);
        double bytes = (double)json_integer_value(json_object_get(o, "model_bytes"));
        double gflops = pp * prefill_flops_per_token(&s, prompt) / 1e9;
        double read = tg * bytes;
        printf("%-40s %8.1f %9.1f %6.0f%% %9.2f %8.1f %8.1f %6.0f%%\n", argv[i], pp, gflops, 100 * gflops / fma, tg,
               read / 1e9, bw_model / 1e9, 100 * read / bw_model);
        json_t *r = json_object();
        json_object_set_new(r, "model", json_string(argv[i]));
        json_object_set_new(r, "weights", json_string(s.wtype));
        json_object_set_new(r, "pp_tok_s", json_real(pp));
        json_object_set_new(r, "prefill_gflops", json_real(gflops));
        json_object_set_new(r, "prefill_of_peak", json_real(gflops / fma));
        json_object_set_new(r, "tg_tok_s", json_real(tg));
        json_object_set_new(r, "tg_tok_s_mean", json_real(tg_mean));
        json_object_set_new(r, "decode_gb_s", json_real(read / 1e9));
        json_object_set_new(r, "read_gb_s", json_real(bw_model / 1e9));
        json_object_set_new(r, "decode_of_bandwidth", json_real(read / bw_model));
        json_array_append_new(runs, r);
        json_decref(o);
    }
    json_object_set_new(out, "models", runs);
    char *js = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(4));
    printf("%s\n", js ? js : "{}");
    free(js);
    json_decref(out);
    bs_threadpool_close(pool);
    return 0;
}
