/* train/default_model.c — build, evaluate and find the embedded default
 * model (see default_model.h). */
#include "train/default_model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/log.h"
#include "base/paths.h"
#include "base/threadpool.h"
#include "engine/context.h"
#include "engine/generate.h"
#include "engine/model.h"
#include "format/safetensors_write.h"
#include "template/chat_template.h"
#include "train/bpe.h"
#include "train/dataset.h"
#include "train/sft.h"

/* Bump when the corpus, tokenizer, initialisation or training code changes
 * what a config builds: cached models with another recipe are rebuilt. */
#define RECIPE 1

#define BUILD_INFO "basalt_build.json"
#define MAX_ANSWER_TOKENS 96
#define LOSS_WINDOW 20

static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
enum { SPECIAL_ENDOFTEXT, SPECIAL_IM_START, SPECIAL_IM_END, N_SPECIALS };

/* ChatML, as Qwen2 writes it minus the default system prompt (the model is
 * trained without one, so none is inserted). */
static const char chat_template_src[] =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

void default_model_config_default(default_model_config *c) {
    *c = (default_model_config){
        .dim = 128, .n_layers = 4, .n_heads = 4, .ffn_dim = 384, .ctx = 512, .n_merges = 765,
        .steps = 4000, .batch_size = 16, .micro_tokens = 1024, .lr = 2e-3, .seed = 1, .eval_per_family = 40,
    };
}

void default_model_config_tiny(default_model_config *c) {
    *c = (default_model_config){
        .dim = 64, .n_layers = 2, .n_heads = 2, .ffn_dim = 192, .ctx = 256, .n_merges = 256,
        .steps = 300, .batch_size = 16, .micro_tokens = 512, .lr = 1e-2, .seed = 1, .eval_per_family = 6,
    };
}

char *default_model_fingerprint(const default_model_config *c) {
    char *s = NULL;
    if (asprintf(&s,
                 "%s recipe %d: llama dim=%d layers=%d heads=%d ffn=%d ctx=%d merges=%d steps=%d batch=%d "
                 "micro=%d lr=%g seed=%llu eval=%d",
                 DEFAULT_MODEL_NAME, RECIPE, c->dim, c->n_layers, c->n_heads, c->ffn_dim, c->ctx, c->n_merges,
                 c->steps, c->batch_size, c->micro_tokens, c->lr, (unsigned long long)c->seed, c->eval_per_family) < 0)
        return NULL;
    return s;
}

static bs_status check_config(const default_model_config *c, bs_error *err) {
    if (c->dim < 8 || c->n_layers < 1 || c->n_heads < 1 || c->dim % c->n_heads || (c->dim / c->n_heads) % 2 ||
        c->ffn_dim < 1 || c->ctx < 64 || c->n_merges < 0 || c->steps < 1 || c->batch_size < 1 || c->micro_tokens < c->ctx || !(c->lr > 0) ||
        c->eval_per_family < 1)
        return bs_fail(err, BS_EINVAL, "default model: invalid config (dim %d, layers %d, heads %d, steps %d)", c->dim,
                       c->n_layers, c->n_heads, c->steps);
    return BS_OK;
}

/* ---- files of the model directory ------------------------------------------- */

static bs_status dump_json(json_t *root, const char *dir, const char *name, bs_error *err) {
    char *path = bs_path_join(dir, name);
    bs_status s = BS_OK;
    if (!root || !path) s = bs_fail(err, BS_ENOMEM, "default model: out of memory writing %s", name);
    else if (json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        s = bs_fail(err, BS_EIO, "%s: cannot write", path);
    free(path);
    json_decref(root);
    return s;
}

static bs_status write_configs(const char *dir, const default_model_config *c, int vocab, bs_error *err) {
    int base = vocab - N_SPECIALS;
    int eot = base + SPECIAL_ENDOFTEXT, im_end = base + SPECIAL_IM_END;
    json_t *decoder = json_object();
    for (int i = 0; decoder && i < N_SPECIALS; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", base + i);
        json_object_set_new(decoder, id,
                            json_pack("{s:s,s:b,s:b,s:b,s:b,s:b}", "content", specials[i], "lstrip", 0, "normalized", 0,
                                      "rstrip", 0, "single_word", 0, "special", 1));
    }
    json_t *tok_cfg = json_pack("{s:b,s:b,s:o,s:n,s:s,s:s,s:s,s:i,s:b,s:s}", "add_bos_token", 0, "add_eos_token", 0,
                                "added_tokens_decoder", decoder, "bos_token", "eos_token", specials[SPECIAL_IM_END],
                                "pad_token", specials[SPECIAL_ENDOFTEXT], "chat_template", chat_template_src,
                                "model_max_length", c->ctx, "clean_up_tokenization_spaces", 0, "tokenizer_class",
                                "PreTrainedTokenizerFast");
    bs_status s = dump_json(tok_cfg, dir, "tokenizer_config.json", err);
    if (!s)
        s = dump_json(json_pack("{s:[i,i],s:i,s:b}", "eos_token_id", im_end, eot, "pad_token_id", eot, "do_sample", 0),
                      dir, "generation_config.json", err);
    if (!s)
        s = dump_json(json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:b,s:s,s:b,s:b,s:i,s:s,s:f}",
                                "architectures", "LlamaForCausalLM", "model_type", "llama", "vocab_size", vocab,
                                "hidden_size", c->dim, "intermediate_size", c->ffn_dim, "num_hidden_layers",
                                c->n_layers, "num_attention_heads", c->n_heads, "num_key_value_heads", c->n_heads,
                                "max_position_embeddings", c->ctx, "rms_norm_eps", 1e-5, "rope_theta", 10000.0,
                                "tie_word_embeddings", 1, "hidden_act", "silu", "attention_bias", 0, "mlp_bias", 0,
                                "eos_token_id", im_end, "torch_dtype", "float32", "initializer_range", 0.02),
                      dir, "config.json", err);
    return s;
}

/* Initial weights: normal(0, 0.02) matrices (residual projections scaled by
 * 1/sqrt(2 layers), as GPT-2 does), norms at 1; each tensor from its own
 * seeded stream so the order of writing does not matter. */
typedef struct init_spec {
    char name[96];
    float std; /* 0: a norm, all ones */
    uint64_t seed;
} init_spec;

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static bs_status fill_init(void *ctx, const st_write_tensor *t, void *dst, bs_error *err) {
    (void)ctx;
    (void)err;
    const init_spec *sp = t->user;
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    float *x = dst;
    uint64_t s = sp->seed;
    for (int64_t i = 0; i < n; i++) {
        if (sp->std == 0) {
            x[i] = 1.0f;
            continue;
        }
        double u1 = ((double)(mix(&s) >> 11) + 0.5) / 9007199254740992.0, u2 = (double)(mix(&s) >> 11) / 9007199254740992.0;
        x[i] = (float)(sp->std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
    return BS_OK;
}

static bs_status write_init_weights(const char *dir, const default_model_config *c, int vocab, bs_error *err) {
    static const struct {
        const char *fmt;
        int rows, cols; /* 0 dim, 1 ffn, -1 none */
        int residual;
    } per_layer[] = {
        {"model.layers.%d.input_layernorm.weight", 0, -1, 0},  {"model.layers.%d.self_attn.q_proj.weight", 0, 0, 0},
        {"model.layers.%d.self_attn.k_proj.weight", 0, 0, 0},  {"model.layers.%d.self_attn.v_proj.weight", 0, 0, 0},
        {"model.layers.%d.self_attn.o_proj.weight", 0, 0, 1},  {"model.layers.%d.post_attention_layernorm.weight", 0, -1, 0},
        {"model.layers.%d.mlp.gate_proj.weight", 1, 0, 0},     {"model.layers.%d.mlp.up_proj.weight", 1, 0, 0},
        {"model.layers.%d.mlp.down_proj.weight", 0, 1, 1},
    };
    const int per = (int)(sizeof per_layer / sizeof per_layer[0]);
    size_t n = (size_t)(2 + per * c->n_layers);
    st_write_tensor *ts = calloc(n, sizeof *ts);
    init_spec *sp = calloc(n, sizeof *sp);
    bs_status s = BS_OK;
    if (!ts || !sp) {
        s = bs_fail(err, BS_ENOMEM, "default model: out of memory");
        goto done;
    }
    const float std = 0.02f, std_res = 0.02f / sqrtf(2.0f * (float)c->n_layers);
    snprintf(sp[0].name, sizeof sp[0].name, "model.embed_tokens.weight");
    sp[0].std = std;
    ts[0] = (st_write_tensor){.ndim = 2, .shape = {vocab, c->dim}};
    snprintf(sp[1].name, sizeof sp[1].name, "model.norm.weight");
    ts[1] = (st_write_tensor){.ndim = 1, .shape = {c->dim}};
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < per; k++) {
            size_t i = (size_t)(2 + l * per + k);
            snprintf(sp[i].name, sizeof sp[i].name, per_layer[k].fmt, l);
            int rows = per_layer[k].rows ? c->ffn_dim : c->dim;
            if (per_layer[k].cols < 0) {
                ts[i] = (st_write_tensor){.ndim = 1, .shape = {rows}};
            } else {
                ts[i] = (st_write_tensor){.ndim = 2, .shape = {rows, per_layer[k].cols ? c->ffn_dim : c->dim}};
                sp[i].std = per_layer[k].residual ? std_res : std;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        sp[i].seed = c->seed * 1000003u + i;
        ts[i].name = sp[i].name;
        ts[i].dtype = BS_DTYPE_F32;
        ts[i].user = &sp[i];
    }
    char *path = bs_path_join(dir, "model.safetensors");
    s = path ? st_write_file(path, ts, n, fill_init, NULL, err) : bs_fail(err, BS_ENOMEM, "default model: out of memory");
    free(path);
done:
    free(ts);
    free(sp);
    return s;
}

/* The corpus files and the tokenizer trained on the training split's text
 * as the chat template lays it out between special tokens. */
static bs_status write_corpus_and_tokenizer(const char *dir, const char *corpus_dir, const default_model_config *c,
                                            int *vocab, bs_error *err) {
    size_t n_train = (size_t)c->steps * (size_t)c->batch_size;
    char *train = bs_path_join(corpus_dir, "train.jsonl"), *eval = bs_path_join(corpus_dir, "eval.jsonl");
    char *tok_path = bs_path_join(dir, "tokenizer.json");
    bpe_trainer *bpe = NULL;
    bs_status s = train && eval && tok_path ? BS_OK : bs_fail(err, BS_ENOMEM, "default model: out of memory");
    if (!s) s = corpus_write_jsonl(train, c->seed, CORPUS_TRAIN, n_train, err);
    if (!s) s = corpus_write_jsonl(eval, c->seed, CORPUS_EVAL, (size_t)c->eval_per_family * CORPUS_N_FAMILIES, err);
    if (!s) s = bpe_trainer_open(&bpe, err);
    corpus_gen g;
    corpus_gen_init(&g, c->seed, CORPUS_TRAIN);
    for (size_t i = 0; i < n_train && !s; i++) {
        corpus_example ex;
        corpus_next(&g, &ex);
        char text[2 * CORPUS_TEXT_MAX + 32];
        int k = snprintf(text, sizeof text, "user\n%s", ex.prompt);
        s = bpe_add_text(bpe, text, (size_t)k, err);
        if (!s) s = bpe_add_text(bpe, "\n", 1, err);
        k = snprintf(text, sizeof text, "assistant\n%s", ex.answer);
        if (!s) s = bpe_add_text(bpe, text, (size_t)k, err);
    }
    if (!s) s = bpe_train(bpe, c->n_merges, err);
    if (!s) s = bpe_write_tokenizer_json(bpe, specials, N_SPECIALS, tok_path, err);
    if (!s) *vocab = bpe_vocab_size(bpe) + N_SPECIALS;
    bpe_trainer_close(bpe);
    free(train), free(eval), free(tok_path);
    return s;
}

/* ---- training ------------------------------------------------------------------ */

typedef struct train_watch {
    const default_model_opts *o;
    double losses[LOSS_WINDOW];
    int n_losses;
    int stopped_early;
    int every;
} train_watch;

static int on_step(void *user, const sft_progress *p) {
    train_watch *w = user;
    w->losses[w->n_losses++ % LOSS_WINDOW] = p->train_loss;
    if (w->o->progress && (p->step % w->every == 0 || p->step == p->total_steps || p->step == 1)) {
        char line[200];
        snprintf(line, sizeof line, "step %d/%d  loss %.4f  lr %.2e  %.0f tokens/s  %.0f s elapsed, about %.0f s left",
                 p->step, p->total_steps, p->train_loss, p->lr, p->tokens_per_s, p->elapsed_s, p->eta_s);
        w->o->progress(w->o->user, line);
    }
    if (w->o->max_seconds > 0 && p->elapsed_s > w->o->max_seconds && p->step < p->total_steps) {
        w->stopped_early = 1;
        return 1;
    }
    return 0;
}

static void say(const default_model_opts *o, const char *line) {
    if (o->progress) o->progress(o->user, line);
}

static bs_status train_model(const char *init_dir, const char *corpus_dir, const char *out_dir,
                             const default_model_config *c, const default_model_opts *o, default_model_report *rep,
                             bs_error *err) {
    bs_model *model = NULL;
    chat_template *tmpl = NULL;
    dataset *ds = NULL;
    sft_run *run = NULL;
    char *report = NULL, *train = bs_path_join(corpus_dir, "train.jsonl");
    sft_config sc;
    sft_config_default(&sc);
    sc.n_epochs = 1;
    sc.batch_size = c->batch_size;
    sc.lr = c->lr;
    sc.full = 1;
    sc.warmup_ratio = 0.05f;
    /* sft's max_length is both the longest example and the micro-batch
     * capacity; corpus examples are far shorter than ctx, so it sets how
     * many of a step's examples go through one pass. */
    sc.max_length = c->micro_tokens;
    sc.seed = c->seed;
    sc.threads = o->threads;
    sc.checkpoint_every = -1;
    dataset_opts dopts;
    sft_dataset_opts(&sc, &dopts);
    bs_model_params mp = {.n_threads = o->threads};
    bs_status s = train ? BS_OK : bs_fail(err, BS_ENOMEM, "default model: out of memory");
    if (!s) s = model_open(init_dir, &mp, &model, err);
    if (!s) s = chat_template_from_model(init_dir, NULL, &tmpl, err);
    if (!s) s = dataset_open(train, DATASET_CHAT, model_tokenizer(model), tmpl, &dopts, &ds, &report, err);
    if (!s) s = sft_resolve(&sc, dataset_count(ds), err);
    if (!s) s = sft_open(model, &sc, ds, NULL, &run, err);
    if (!s) {
        const bs_model_config *mc = model_config(model);
        rep->n_params = (int64_t)mc->n_vocab * mc->dim + mc->dim +
                        (int64_t)mc->n_layers * (2 * mc->dim + 4 * (int64_t)mc->dim * mc->dim + 3 * (int64_t)mc->dim * mc->ffn_dim);
        char line[200];
        snprintf(line, sizeof line, "training %lld parameters on %zu examples (%zu tokens), %d steps of %d",
                 (long long)rep->n_params, dataset_count(ds), dataset_stats_of(ds)->tokens, sft_total_steps(run),
                 c->batch_size);
        say(o, line);
        train_watch w = {.o = o, .every = sft_total_steps(run) / 20 > 0 ? sft_total_steps(run) / 20 : 1};
        sft_hooks hooks = {.user = &w, .on_step = on_step};
        int finished = 0;
        double t0 = bs_now();
        s = sft_train(run, NULL, &hooks, &finished, err);
        rep->seconds_train = bs_now() - t0;
        rep->steps_done = sft_step(run);
        rep->total_steps = sft_total_steps(run);
        rep->trained_tokens = sft_trained_tokens(run);
        int nl = w.n_losses < LOSS_WINDOW ? w.n_losses : LOSS_WINDOW;
        for (int i = 0; i < nl; i++) rep->final_loss += w.losses[i] / nl;
        if (!s) s = sft_export(run, init_dir, DEFAULT_MODEL_NAME, out_dir, err);
    }
    if (report) bs_log_error("%s", report);
    sft_close(run);
    dataset_close(ds);
    chat_template_close(tmpl);
    model_close(model);
    free(report);
    free(train);
    return s;
}

/* ---- evaluation ---------------------------------------------------------------- */

typedef struct answer_buf {
    char text[4 * MAX_ANSWER_TOKENS * 8];
    size_t len;
} answer_buf;

static int collect(void *user, int32_t token, const char *piece, size_t len) {
    (void)token;
    answer_buf *a = user;
    if (piece && a->len + len < sizeof a->text) {
        memcpy(a->text + a->len, piece, len);
        a->len += len;
        a->text[a->len] = '\0';
    }
    return 0;
}

static bs_status answer_one(bs_context *ctx, const bs_tokenizer *tok, const chat_template *tmpl, const char *prompt,
                            answer_buf *out, bs_error *err) {
    json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", prompt);
    char *text = NULL;
    size_t len = 0, n_ids = 0;
    int32_t *ids = NULL;
    bs_status s = msgs ? chat_template_render(tmpl, msgs, NULL, 1, NULL, &text, &len, err)
                       : bs_fail(err, BS_ENOMEM, "default model: out of memory");
    if (!s) s = tok_encode(tok, text, len, TOK_PARSE_SPECIAL, &ids, &n_ids, err);
    if (!s) {
        bs_generate_params gp = {.max_tokens = MAX_ANSWER_TOKENS};
        sampler_params_default(&gp.sampling);
        gp.sampling.temperature = 0;
        bs_generate_result res;
        out->len = 0;
        out->text[0] = '\0';
        context_reset(ctx);
        s = generate(ctx, ids, (int)n_ids, &gp, collect, out, &res, err);
    }
    free(ids);
    free(text);
    json_decref(msgs);
    return s;
}

bs_status default_model_eval(const char *model_dir, const default_model_config *c, int threads,
                             default_model_report *rep, bs_error *err) {
    bs_model *model = NULL;
    chat_template *tmpl = NULL;
    bs_context *ctx = NULL;
    answer_buf *ans = malloc(sizeof *ans);
    bs_model_params mp = {.n_threads = threads};
    memset(rep->n_eval, 0, sizeof rep->n_eval);
    memset(rep->n_correct, 0, sizeof rep->n_correct);
    bs_status s = ans ? BS_OK : bs_fail(err, BS_ENOMEM, "default model: out of memory");
    if (!s) s = model_open(model_dir, &mp, &model, err);
    if (!s && !model_tokenizer(model)) s = bs_fail(err, BS_ENOTFOUND, "%s: no tokenizer", model_dir);
    if (!s) s = chat_template_from_model(model_dir, NULL, &tmpl, err);
    if (!s) s = context_open(model, c->ctx, &ctx, err);
    corpus_gen g;
    corpus_gen_init(&g, c->seed, CORPUS_EVAL);
    for (int left = c->eval_per_family * CORPUS_N_FAMILIES; left > 0 && !s;) {
        corpus_example ex;
        corpus_next(&g, &ex);
        if (rep->n_eval[ex.family] >= c->eval_per_family) continue;
        s = answer_one(ctx, model_tokenizer(model), tmpl, ex.prompt, ans, err);
        if (s) break;
        rep->n_eval[ex.family]++;
        rep->n_correct[ex.family] += strcmp(ans->text, ex.answer) == 0;
        left--;
    }
    context_close(ctx);
    chat_template_close(tmpl);
    model_close(model);
    free(ans);
    return s;
}

/* ---- the build ------------------------------------------------------------------ */

static bs_status write_build_info(const char *dir, const default_model_config *c, const default_model_opts *o,
                                  const default_model_report *rep, bs_error *err) {
    char *fp = default_model_fingerprint(c);
    json_t *acc = json_object();
    for (int f = 0; acc && f < CORPUS_N_FAMILIES; f++)
        json_object_set_new(acc, corpus_family_name(f),
                            json_pack("{s:i,s:i}", "correct", rep->n_correct[f], "of", rep->n_eval[f]));
    json_t *root = fp && acc ? json_pack("{s:s,s:b,s:i,s:i,s:I,s:I,s:f,s:i,s:f,s:f,s:f,s:o}", "fingerprint", fp,
                                         "complete", rep->steps_done == rep->total_steps, "steps_done",
                                         rep->steps_done, "total_steps", rep->total_steps, "trained_tokens",
                                         (json_int_t)rep->trained_tokens, "parameters", (json_int_t)rep->n_params,
                                         "final_train_loss", rep->final_loss, "threads",
                                         o->threads > 0 ? o->threads : bs_cpu_count(), "seconds_data",
                                         rep->seconds_data, "seconds_train", rep->seconds_train, "seconds_eval",
                                         rep->seconds_eval, "eval_exact_match", acc)
                             : NULL;
    if (!root) json_decref(acc);
    free(fp);
    return dump_json(root, dir, BUILD_INFO, err);
}

bs_status default_model_build(const char *out_dir, const default_model_config *c, const default_model_opts *o,
                              default_model_report *rep, bs_error *err) {
    memset(rep, 0, sizeof *rep);
    bs_status s = check_config(c, err);
    if (s) return s;
    char *work = NULL, *init = NULL, *corpus = NULL;
    if (asprintf(&work, "%s.partial", out_dir) < 0) work = NULL;
    init = work ? bs_path_join(work, "init") : NULL;
    corpus = work ? bs_path_join(work, "corpus") : NULL;
    if (!work || !init || !corpus) {
        s = bs_fail(err, BS_ENOMEM, "default model: out of memory");
        goto done;
    }
    double t0 = bs_now();
    s = bs_remove_tree(work, err);
    if (!s) s = bs_make_dirs(init, 0755, err);
    if (!s) s = bs_make_dirs(corpus, 0755, err);
    say(o, "generating the corpus and training the tokenizer");
    if (!s) s = write_corpus_and_tokenizer(init, corpus, c, &rep->vocab, err);
    if (!s) s = write_configs(init, c, rep->vocab, err);
    if (!s) s = write_init_weights(init, c, rep->vocab, err);
    rep->seconds_data = bs_now() - t0;
    if (!s) s = train_model(init, corpus, work, c, o, rep, err);
    if (!s) s = bs_remove_tree(init, err);
    if (!s) {
        say(o, "scoring the held-out split");
        double t1 = bs_now();
        s = default_model_eval(work, c, o->threads, rep, err);
        rep->seconds_eval = bs_now() - t1;
    }
    if (!s) s = write_build_info(work, c, o, rep, err);
    if (!s) s = bs_remove_tree(out_dir, err);
    if (!s && rename(work, out_dir) != 0)
        s = bs_fail(err, BS_EIO, "%s: cannot rename to %s: %s", work, out_dir, strerror(errno));
    if (s) {
        bs_error ignored;
        bs_remove_tree(work, &ignored); /* a failed build leaves nothing behind; err keeps the first problem */
    }
done:
    free(work);
    free(init);
    free(corpus);
    return s;
}

bs_status default_model_dir(const char *data_override, char **out, bs_error *err) {
    char *data = NULL;
    *out = NULL;
    bs_status s = bs_data_dir(data_override, &data, err);
    if (s) return s;
    char *models = bs_path_join(data, "models");
    *out = models ? bs_path_join(models, DEFAULT_MODEL_NAME) : NULL;
    free(models);
    free(data);
    return *out ? BS_OK : bs_fail(err, BS_ENOMEM, "out of memory");
}

int default_model_is_current(const char *dir, const default_model_config *c) {
    char *path = bs_path_join(dir, BUILD_INFO), *fp = default_model_fingerprint(c);
    json_t *root = path ? json_load_file(path, 0, NULL) : NULL;
    const char *have = json_string_value(json_object_get(root, "fingerprint"));
    int ok = fp && have && strcmp(have, fp) == 0 && json_is_true(json_object_get(root, "complete"));
    json_decref(root);
    free(path);
    free(fp);
    return ok;
}
