/* server/ft_jobs.c — the fine-tuning job runner: one thread, one job at a
 * time, every transition written to the store under the runner's mutex so
 * the handlers' cancel/pause/resume and the runner never overwrite each
 * other.  A handler changes a job's status itself and, when the runner is
 * working on that job, leaves a request the runner honours at its next step
 * boundary (cancel: drop the run; pause and shutdown: checkpoint first). */
#include "server/ft_jobs.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/log.h"
#include "base/paths.h"
#include "server/server_impl.h"

typedef enum { REQ_NONE, REQ_CANCEL, REQ_PAUSE, REQ_SHUTDOWN } ft_request;

struct ft_runner {
    basalt_server *s;
    bs_store *store;
    int threads;
    pthread_t thread;
    int started;
    pthread_mutex_t mu; /* guards what follows and every job-row update */
    pthread_cond_t wake;
    int stopping;
    char current[64];   /* the job being worked on; "" when idle */
    ft_request request; /* for current */
    long long estimate; /* current's estimated finish, -1 unknown */
};

/* ---- names and events ------------------------------------------------------ */

void ft_model_name(const char *base, const char *suffix, const char *job_id, char *out, size_t cap) {
    char clean[65] = "";
    size_t k = 0;
    for (const char *p = suffix ? suffix : ""; *p && k + 1 < sizeof clean; p++) {
        char c = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        clean[k++] = ok ? c : '-';
    }
    clean[k] = '\0';
    snprintf(out, cap, "ft:%s:%s:%s", base, clean, job_id);
}

/* One event; data (stolen) may be NULL.  A failed insert is logged only:
 * the job goes on. */
static void add_event(ft_runner *r, const char *job, const char *level, const char *type, json_t *data, const char *fmt,
                      ...) __attribute__((format(printf, 6, 7)));
static void add_event(ft_runner *r, const char *job, const char *level, const char *type, json_t *data, const char *fmt,
                      ...) {
    char id[48], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    random_id("ftevent-", id, sizeof id);
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    store_event e = {.id = id, .job_id = (char *)job, .created_at = unix_now(), .level = (char *)level,
                     .message = msg, .type = (char *)type, .data = text};
    bs_error err = {0};
    if (store_event_insert(r->store, &e, &err) != BS_OK) bs_log_error("fine-tuning %s: event: %s", job, err.msg);
    free(text);
}

static void update_job(ft_runner *r, const store_job *j) {
    bs_error err = {0};
    if (store_job_update(r->store, j, &err) != BS_OK) bs_log_error("fine-tuning %s: %s", j->id, err.msg);
}

static void set_string(char **field, const char *v) {
    free(*field);
    *field = v ? strdup(v) : NULL;
}

/* ---- hyperparameters ------------------------------------------------------- */

typedef struct hparam {
    const char *name;
    int integer;                 /* 1: an integer */
    double lo, hi;               /* allowed range */
    int lo_open;                 /* lo itself excluded */
    const char *const *choices;  /* a string from this NULL-terminated list instead of a number */
} hparam;

/* One method's hyperparameters: the table, how a value lands in its config
 * and how the resolved config reads back. */
typedef struct hparam_table {
    const hparam *p;
    size_t n;
    const char *names; /* for the unknown-name message */
    void (*set)(void *c, size_t i, const json_t *v);
    json_t *(*get)(const void *c, size_t i);
} hparam_table;

static bs_status decode_hparams(const json_t *h, const char *prefix, const hparam_table *t, void *c, api_error *a) {
    if (!h || json_is_null(h)) return BS_OK;
    if (!json_is_object(h)) return api_fail(a, BS_EINVAL, prefix, NULL, "%s: expected an object", prefix);
    const char *key;
    const json_t *v;
    char param[128];
    json_object_foreach((json_t *)h, key, v) {
        size_t i = 0;
        while (i < t->n && strcmp(t->p[i].name, key) != 0) i++;
        snprintf(param, sizeof param, "%s.%s", prefix, key);
        if (i == t->n) return api_fail(a, BS_EINVAL, param, NULL, "%s: unknown hyperparameter (%s)", param, t->names);
    }
    /* In table order, so a value may depend on one before it. */
    for (size_t i = 0; i < t->n; i++) {
        const hparam *p = &t->p[i];
        v = json_object_get(h, p->name);
        snprintf(param, sizeof param, "%s.%s", prefix, p->name);
        if (!v || json_is_null(v) || (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0)) continue;
        if (p->choices) {
            size_t k = 0;
            while (p->choices[k] && !(json_is_string(v) && strcmp(p->choices[k], json_string_value(v)) == 0)) k++;
            if (!p->choices[k]) {
                char list[128] = "";
                for (size_t m = 0, len = 0; p->choices[m] && len < sizeof list; m++)
                    len += (size_t)snprintf(list + len, sizeof list - len, "%s\"%s\"", m ? ", " : "", p->choices[m]);
                return api_fail(a, BS_EINVAL, param, NULL, "%s: expected \"auto\" or one of %s", param, list);
            }
        } else {
            double x = json_number_value(v);
            int ok = json_is_number(v) && (!p->integer || json_is_integer(v)) && x <= p->hi &&
                     (p->lo_open ? x > p->lo : x >= p->lo);
            if (!ok)
                return api_fail(a, BS_EINVAL, param, NULL, "%s: expected \"auto\" or %s %s %g and <= %g", param,
                                p->integer ? "an integer" : "a number", p->lo_open ? ">" : ">=", p->lo, p->hi);
        }
        if (c) t->set(c, i, v);
    }
    return BS_OK;
}

/* The resolved values, as the job shows them once running. */
static json_t *hparams_json(const hparam_table *t, const void *c) {
    json_t *o = json_object();
    for (size_t i = 0; i < t->n; i++) {
        json_t *v = t->get(c, i);
        if (v) json_object_set_new(o, t->p[i].name, v);
    }
    return o;
}

static json_t *number_json(const hparam *p, double v) {
    return p->integer ? json_integer((json_int_t)v) : json_real(v);
}

/* supervised */

static const hparam sft_hparams[] = {
    {"n_epochs", 1, 1, 50, 0, NULL},
    {"batch_size", 1, 1, 256, 0, NULL},
    {"learning_rate_multiplier", 0, 0, 1e4, 1, NULL},
    {"lora_rank", 1, 1, BS_ADAPTER_MAX_RANK, 0, NULL},
    {"lora_alpha", 0, 0, 1e6, 1, NULL},
    {"lora_dropout", 0, 0, 0.999999, 0, NULL},
    {"max_length", 1, 2, 1 << 20, 0, NULL},
    {"warmup_ratio", 0, 0, 0.999999, 0, NULL},
    {"checkpoint_every", 1, 1, 1e9, 0, NULL},
    {"eval_every", 1, 1, 1e9, 0, NULL},
};
#define N_SFT_HPARAMS (sizeof sft_hparams / sizeof sft_hparams[0])

static void sft_hparam_set(void *cfg, size_t i, const json_t *j) {
    sft_config *c = cfg;
    double v = json_number_value(j);
    switch (i) {
    case 0: c->n_epochs = (int)v; break;
    case 1: c->batch_size = (int)v; break;
    case 2: c->lr_multiplier = v; break;
    case 3: c->lora.rank = (int)v; break;
    case 4: c->lora.alpha = (float)v; break;
    case 5: c->lora.dropout = (float)v; break;
    case 6: c->max_length = (int)v; break;
    case 7: c->warmup_ratio = (float)v; break;
    case 8: c->checkpoint_every = (int)v; break;
    default: c->eval_every = (int)v; break;
    }
}

static json_t *sft_hparam_get(const void *cfg, size_t i) {
    const sft_config *c = cfg;
    const double v[N_SFT_HPARAMS] = {c->n_epochs,   c->batch_size,   c->lr_multiplier,    c->lora.rank,
                                     c->lora.alpha, c->lora.dropout, c->max_length,       c->warmup_ratio,
                                     c->checkpoint_every, c->eval_every};
    return number_json(&sft_hparams[i], v[i]);
}

static const hparam_table sft_table = {
    sft_hparams, N_SFT_HPARAMS,
    "n_epochs, batch_size, learning_rate_multiplier; basalt: lora_rank, lora_alpha, lora_dropout, max_length, "
    "warmup_ratio, checkpoint_every, eval_every",
    sft_hparam_set, sft_hparam_get};

bs_status ft_hparams_decode(const json_t *h, const char *prefix, sft_config *c, api_error *a) {
    return decode_hparams(h, prefix, &sft_table, c, a);
}

/* reinforcement */

static const char *const loss_types[] = {"grpo", "dr_grpo", "dapo", NULL};
static const char *const scales[] = {"group", "batch", "none", NULL};
static const char *const efforts[] = {"auto", NULL}; /* anything else: 400, basalt renders no effort */

static const hparam rft_hparams[] = {
    {"n_epochs", 1, 1, 50, 0, NULL},
    {"batch_size", 1, 1, 256, 0, NULL},
    {"learning_rate_multiplier", 0, 0, 1e4, 1, NULL},
    {"eval_interval", 1, 1, 1e9, 0, NULL},
    {"eval_samples", 1, 1, 64, 0, NULL},
    {"group_size", 1, 2, 64, 0, NULL},
    {"compute_multiplier", 0, 0, 8, 1, NULL}, /* after group_size: scales it when auto */
    {"reasoning_effort", 0, 0, 0, 0, efforts},
    {"max_completion_tokens", 1, 1, 32768, 0, NULL},
    {"temperature", 0, 0, 2, 1, NULL},
    {"top_p", 0, 0, 1, 1, NULL},
    {"beta", 0, 0, 1e3, 0, NULL},
    {"epsilon", 0, 0, 10, 1, NULL},
    {"epsilon_high", 0, 0, 10, 1, NULL},
    {"loss_type", 0, 0, 0, 0, loss_types},
    {"scale_rewards", 0, 0, 0, 0, scales},
    {"lora_rank", 1, 1, BS_ADAPTER_MAX_RANK, 0, NULL},
    {"lora_alpha", 0, 0, 1e6, 1, NULL},
    {"max_length", 1, 2, 1 << 20, 0, NULL},
    {"warmup_ratio", 0, 0, 0.999999, 0, NULL},
    {"max_unscored_fraction", 0, 0, 1, 0, NULL},
    {"checkpoint_every", 1, 1, 1e9, 0, NULL},
    {"keep_checkpoints", 1, 1, 100, 0, NULL},
};
#define N_RFT_HPARAMS (sizeof rft_hparams / sizeof rft_hparams[0])
/* compute_multiplier scales the auto group size: round(8 x m), 2..64. */
#define RFT_BASE_GROUP 8

static void rft_hparam_set(void *cfg, size_t i, const json_t *j) {
    rft_config *c = cfg;
    double v = json_number_value(j);
    const char *s = json_string_value(j);
    switch (i) {
    case 0: c->n_epochs = (int)v; break;
    case 1: c->batch_size = (int)v; break;
    case 2: c->lr_multiplier = v; break;
    case 3: c->eval_every = (int)v; break;
    case 4: c->eval_samples = (int)v; break;
    case 5: c->grpo.group_size = (int)v; break;
    case 6:
        if (c->grpo.group_size == 0) {
            int g = (int)lround(RFT_BASE_GROUP * v);
            c->grpo.group_size = g < 2 ? 2 : g > 64 ? 64 : g;
        }
        break;
    case 7: break; /* only "auto" passes decoding */
    case 8: c->grpo.max_completion_len = (int)v; break;
    case 9: c->temperature = (float)v; break;
    case 10: c->top_p = (float)v; break;
    case 11: c->grpo.beta = (float)v; break;
    case 12: c->grpo.epsilon = (float)v; break;
    case 13: c->grpo.epsilon_high = (float)v; break;
    case 14: grpo_parse_loss_type(s, &c->grpo.loss_type, NULL); break;
    case 15: grpo_parse_scale(s, &c->grpo.scale_rewards, NULL); break;
    case 16: c->lora.rank = (int)v; break;
    case 17: c->lora.alpha = (float)v; break;
    case 18: c->max_length = (int)v; break;
    case 19: c->warmup_ratio = (float)v; break;
    case 20: c->max_unscored_frac = (float)v; break;
    case 21: c->checkpoint_every = (int)v; break;
    default: c->keep_checkpoints = (int)v; break;
    }
}

static json_t *rft_hparam_get(const void *cfg, size_t i) {
    const rft_config *c = cfg;
    switch (i) {
    case 6: return NULL; /* folded into group_size */
    case 7: return json_string("auto");
    case 14: return json_string(loss_types[c->grpo.loss_type]);
    case 15: return json_string(scales[c->grpo.scale_rewards]);
    default: break;
    }
    const double v[N_RFT_HPARAMS] = {
        c->n_epochs,          c->batch_size, c->lr_multiplier, c->eval_every,       c->eval_samples,
        c->grpo.group_size,   0,             0,                c->grpo.max_completion_len, c->temperature,
        c->top_p,             c->grpo.beta,  c->grpo.epsilon,  c->grpo.epsilon_high, 0,
        0,                    c->lora.rank,  c->lora.alpha,    c->max_length,       c->warmup_ratio,
        c->max_unscored_frac, c->checkpoint_every, c->keep_checkpoints};
    return number_json(&rft_hparams[i], v[i]);
}

static const hparam_table rft_table = {
    rft_hparams, N_RFT_HPARAMS,
    "n_epochs, batch_size, learning_rate_multiplier, eval_interval, eval_samples, compute_multiplier, "
    "reasoning_effort; basalt: group_size, max_completion_tokens, temperature, top_p, beta, epsilon, epsilon_high, "
    "loss_type, scale_rewards, lora_rank, lora_alpha, max_length, warmup_ratio, max_unscored_fraction, "
    "checkpoint_every, keep_checkpoints",
    rft_hparam_set, rft_hparam_get};

bs_status ft_rft_hparams_decode(const json_t *h, const char *prefix, rft_config *c, api_error *a) {
    return decode_hparams(h, prefix, &rft_table, c, a);
}

/* ---- the runner's view of a job -------------------------------------------- */

/* What the runner needs of a training run, supervised or reinforcement. */
typedef struct run_ops {
    int (*step)(const void *run);
    int (*total_steps)(const void *run);
    bs_status (*save)(void *run, const char *dir, bs_error *err);
    bs_status (*load)(void *run, const char *dir, bs_error *err);
    bs_status (*export_adapter)(void *run, const char *base_name, const char *dir, bs_error *err);
    int64_t (*trained_tokens)(const void *run);
} run_ops;

typedef struct run_ctx {
    ft_runner *r;
    store_job *job;
    const run_ops *ops;
    void *run;
    const char *ckpt_root;
    int last_ckpt_step;
    json_t *last_metrics; /* of the last step, for a checkpoint made on request */
    char exported[96];    /* which weights the model is, for its event ("" to say nothing) */
} run_ctx;

static ft_request pending(ft_runner *r) {
    pthread_mutex_lock(&r->mu);
    ft_request q = r->request;
    pthread_mutex_unlock(&r->mu);
    return q;
}

/* Move the job to status unless a client asked for something meanwhile
 * (then the client's status stands); returns 1 when moved. */
static int transition(ft_runner *r, store_job *j, store_job_status status) {
    pthread_mutex_lock(&r->mu);
    int ok = r->request == REQ_NONE;
    if (ok) {
        j->status = status;
        update_job(r, j);
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static void fail_job(ft_runner *r, store_job *j, const char *code, const char *param, const char *msg) {
    pthread_mutex_lock(&r->mu);
    if (r->request != REQ_CANCEL) {
        json_t *e = json_pack("{s:s,s:s,s:s?}", "code", code, "message", msg, "param", param);
        char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
        json_decref(e);
        free(j->error);
        j->error = text;
        j->status = STORE_JOB_FAILED;
        j->finished_at = unix_now();
        update_job(r, j);
    }
    pthread_mutex_unlock(&r->mu);
    add_event(r, j->id, "error", "message", NULL, "Fine-tuning job failed: %.900s", msg);
}

static srv_model *served_model(basalt_server *s, const char *name) {
    for (int i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0) return &s->models[i];
    return NULL;
}

/* The path of one of the job's files; fails the job (param names the
 * field) when it is gone.  *path is malloc'ed. */
static int file_path(ft_runner *r, store_job *j, const char *file_id, const char *param, char **path) {
    store_file f;
    bs_error err = {0};
    *path = NULL;
    if (store_file_get(r->store, file_id, &f, &err) != BS_OK) {
        char code[64], msg[1024];
        snprintf(code, sizeof code, "invalid_%s", param);
        snprintf(msg, sizeof msg, "%s: the file %s no longer exists", param, file_id);
        fail_job(r, j, code, param, msg);
        return 0;
    }
    *path = strdup(f.path);
    store_file_clear(&f);
    return *path != NULL;
}

/* Fails the job for data that did not open: the line-numbered report, or
 * why the file cannot be read. */
static void data_failed(ft_runner *r, store_job *j, const char *file_id, const char *param, const char *report,
                        const bs_error *err) {
    char code[64], *text = NULL;
    size_t len = 0;
    snprintf(code, sizeof code, "invalid_%s", param);
    FILE *mf = open_memstream(&text, &len);
    if (mf) {
        if (report) fprintf(mf, "%s: %s has problems:\n%s", param, file_id, report);
        else fprintf(mf, "%s: %s cannot be read: %s", param, file_id, err->msg);
        fclose(mf);
    }
    fail_job(r, j, code, param, text ? text : err->msg);
    free(text);
}

/* Open one of the job's files as a dataset (supervised) or prompts
 * (reinforcement, prompts != NULL); fails the job on any problem. */
static int open_data(ft_runner *r, store_job *j, const srv_model *m, const char *file_id, const char *param,
                     const sft_config *c, dataset **out, rft_data **prompts) {
    char *path = NULL, *report = NULL;
    if (!file_path(r, j, file_id, param, &path)) return 0;
    bs_error err = {0};
    bs_status st;
    if (prompts) {
        st = rft_data_open(path, m->tok, m->tmpl, 0, prompts, &report, &err);
    } else {
        dataset_opts o;
        sft_dataset_opts(c, &o);
        st = dataset_open(path, DATASET_AUTO, m->tok, m->tmpl, &o, out, &report, &err);
    }
    if (st != BS_OK) data_failed(r, j, file_id, param, report, &err);
    free(report);
    free(path);
    return st == BS_OK;
}

/* After a step: the metrics event, the pace, and whether a client asked to
 * stop.  d (stolen) is the event's data; its checkpoint metrics are kept. */
static int after_step(run_ctx *x, json_t *d, json_t *ckpt_metrics, double eta_s, const char *msg) {
    add_event(x->r, x->job->id, "info", "metrics", d, "%s", msg);
    json_decref(x->last_metrics);
    x->last_metrics = ckpt_metrics;
    pthread_mutex_lock(&x->r->mu);
    x->r->estimate = unix_now() + (long long)ceil(eta_s);
    ft_request q = x->r->request;
    pthread_mutex_unlock(&x->r->mu);
    return q != REQ_NONE;
}

static int on_step(void *user, const sft_progress *p) {
    run_ctx *x = user;
    json_t *d = json_pack("{s:i,s:i,s:i,s:f,s:f,s:f,s:f,s:I,s:f}", "step", p->step, "total_steps", p->total_steps,
                          "epoch", p->epoch, "train_loss", p->train_loss, "learning_rate", p->lr, "grad_norm",
                          p->grad_norm, "tokens_per_second", p->tokens_per_s, "trained_tokens",
                          (json_int_t)p->trained_tokens, "eta_seconds", p->eta_s);
    json_t *m = json_pack("{s:i,s:f}", "step", p->step, "train_loss", p->train_loss);
    char msg[160], valid[64] = "";
    if (!isnan(p->valid_loss)) {
        json_object_set_new(d, "valid_loss", json_real(p->valid_loss));
        json_object_set_new(m, "valid_loss", json_real(p->valid_loss));
        json_object_set_new(m, "full_valid_loss", json_real(p->valid_loss));
        snprintf(valid, sizeof valid, ", validation loss=%.4f", p->valid_loss);
    }
    snprintf(msg, sizeof msg, "Step %d/%d: training loss=%.4f%s", p->step, p->total_steps, p->train_loss, valid);
    return after_step(x, d, m, p->eta_s, msg);
}

static json_t *rft_scores(const run_ctx *x, const rft_progress *p);

static int on_rft_step(void *user, const rft_progress *p) {
    run_ctx *x = user;
    json_t *errs = json_object();
    for (int k = 0; k < REWARD_ERR_KINDS; k++)
        json_object_set_new(errs, reward_error_name((reward_error_kind)k), json_integer(p->grader_errors.count[k]));
    json_t *d = json_pack(
        "{s:i,s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:i,s:f,s:i,s:i,s:o,s:f,s:f,s:f,s:f,s:f,s:f}", "step", p->step,
        "total_steps", p->total_steps, "epoch", p->epoch, "train_reward_mean", p->train_reward_mean,
        "train_reward_std", p->train_reward_std, "frac_reward_zero_std", p->frac_reward_zero_std, "loss", p->loss, "kl",
        p->kl, "clip_ratio", p->clip_ratio, "completion_length_mean", p->completion_len_mean, "completion_length_max",
        p->completion_len_max, "truncated_fraction", p->truncated_frac, "samples", p->n_samples, "unscored_samples",
        p->n_unscored, "grader_errors", errs, "learning_rate", p->lr, "grad_norm", p->grad_norm, "sample_seconds",
        p->sample_s, "grade_seconds", p->grade_s, "train_seconds", p->train_s, "eta_seconds", p->eta_s);
    /* OpenAI's structured scores and timing, besides TRL's flat names */
    json_object_set_new(d, "entropy", json_real(p->entropy));
    json_object_set_new(d, "scores", rft_scores(x, p));
    json_object_set_new(d, "timing",
                        json_pack("{s:{s:f,s:f,s:f,s:f,s:f}}", "step", "sampling", p->sample_s, "grading", p->grade_s,
                                  "training", p->train_s, "eval", p->eval_s, "full_iteration",
                                  p->sample_s + p->grade_s + p->train_s + p->eval_s));
    json_t *m = json_pack("{s:i,s:f}", "step", p->step, "train_reward_mean", p->train_reward_mean);
    char msg[160], valid[64] = "";
    if (!isnan(p->valid_reward_mean)) {
        json_object_set_new(d, "valid_reward_mean", json_real(p->valid_reward_mean));
        json_object_set_new(m, "valid_reward_mean", json_real(p->valid_reward_mean));
        snprintf(valid, sizeof valid, ", valid_reward_mean=%.4f", p->valid_reward_mean);
    }
    snprintf(msg, sizeof msg, "Step %d/%d: train_reward_mean=%.4f%s", p->step, p->total_steps, p->train_reward_mean,
             valid);
    return after_step(x, d, m, p->eta_s, msg);
}

/* Records a checkpoint directory written at step with metrics (borrowed). */
static bs_status record_checkpoint(run_ctx *x, int step, const json_t *metrics_obj, const char *dir, bs_error *err) {
    char id[48], model[512];
    random_id("ftckpt_", id, sizeof id);
    char *metrics = metrics_obj ? json_dumps(metrics_obj, JSON_COMPACT) : strdup("{}");
    store_checkpoint c = {.id = id, .job_id = x->job->id, .created_at = unix_now(), .step = step,
                          .metrics = metrics, .path = (char *)dir};
    bs_status st = metrics ? store_checkpoint_insert(x->r->store, &c, err) : bs_fail(err, BS_ENOMEM, "out of memory");
    free(metrics);
    if (st != BS_OK) return st;
    x->last_ckpt_step = step;
    ft_model_name(x->job->model, x->job->suffix, x->job->id, model, sizeof model);
    add_event(x->r, x->job->id, "info", "message", NULL, "Checkpoint created at step %d (%s:ckpt-step-%d)", step,
              model, step);
    return BS_OK;
}

/* The hooks' checkpoint callback: the metrics after_step kept. */
static bs_status on_checkpoint(run_ctx *x, int step, const char *dir, bs_error *err) {
    return record_checkpoint(x, step, x->last_metrics, dir, err);
}

static bs_status on_sft_checkpoint(void *user, const sft_progress *p, const char *dir, bs_error *err) {
    return on_checkpoint(user, p->step, dir, err);
}

static bs_status on_rft_checkpoint(void *user, const rft_progress *p, const char *dir, bs_error *err) {
    return on_checkpoint(user, p->step, dir, err);
}

/* Pause and shutdown: keep the progress since the last checkpoint. */
static void checkpoint_now(run_ctx *x) {
    int step = x->ops->step(x->run);
    if (step == 0 || step == x->last_ckpt_step) return;
    char name[32];
    snprintf(name, sizeof name, "checkpoint-%d", step);
    char *dir = bs_path_join(x->ckpt_root, name);
    bs_error err = {0};
    bs_status st = dir ? bs_make_dirs(x->ckpt_root, 0755, &err) : bs_fail(&err, BS_ENOMEM, "out of memory");
    if (st == BS_OK) st = x->ops->save(x->run, dir, &err);
    if (st == BS_OK) st = record_checkpoint(x, step, x->last_metrics, dir, &err);
    if (st != BS_OK)
        add_event(x->r, x->job->id, "warn", "message", NULL, "Could not checkpoint step %d: %s", step, err.msg);
    free(dir);
}

/* The adapter of a succeeded job, served under its ft: name. */
static bs_status serve_adapter(ft_runner *r, const store_job *j, bs_error *err) {
    srv_model *m = served_model(r->s, j->model);
    if (!m) return bs_fail(err, BS_ENOTFOUND, "the base model %s is not served", j->model);
    char rel[96];
    snprintf(rel, sizeof rel, "models/ft/%s", j->id);
    char *dir = bs_path_join(r->s->data_dir, rel);
    if (!dir) return bs_fail(err, BS_ENOMEM, "out of memory");
    bs_adapter *a = NULL;
    bs_status st = adapter_load_peft(m->model, dir, &a, err);
    if (st == BS_OK) st = server_register_adapter(r->s, j->fine_tuned_model, a, j->model, j->owner, err);
    adapter_close(a);
    free(dir);
    return st;
}

/* Training finished: the adapter goes to DATA/models/ft/<id>/ and is served. */
static void succeed(run_ctx *x, const srv_model *m) {
    ft_runner *r = x->r;
    store_job *j = x->job;
    char rel[96], model[512];
    snprintf(rel, sizeof rel, "models/ft/%s", j->id);
    char *dir = bs_path_join(r->s->data_dir, rel);
    bs_error err = {0};
    ft_model_name(j->model, j->suffix, j->id, model, sizeof model);
    bs_status st = dir ? x->ops->export_adapter(x->run, m->name, dir, &err) : bs_fail(&err, BS_ENOMEM, "out of memory");
    free(dir);
    if (st != BS_OK) {
        fail_job(r, j, "export_failed", NULL, err.msg);
        return;
    }
    pthread_mutex_lock(&r->mu);
    if (r->request != REQ_CANCEL) {
        set_string(&j->fine_tuned_model, model);
        j->status = STORE_JOB_SUCCEEDED;
        j->finished_at = unix_now();
        j->trained_tokens = x->ops->trained_tokens(x->run);
        st = serve_adapter(r, j, &err);
        if (st == BS_OK) update_job(r, j);
    }
    pthread_mutex_unlock(&r->mu);
    if (st != BS_OK) {
        fail_job(r, j, "serve_failed", NULL, err.msg);
        return;
    }
    if (j->status != STORE_JOB_SUCCEEDED) return;
    add_event(r, j->id, "info", "message", NULL, "New fine-tuned model created: %s%s", model, x->exported);
    add_event(r, j->id, "info", "message", NULL, "The job has successfully completed");
}

static bs_status latest_checkpoint(ft_runner *r, const char *job, store_checkpoint **c, size_t *n, bs_error *err) {
    store_page page = {.limit = 1};
    int more;
    return store_checkpoint_list(r->store, job, &page, c, n, &more, err);
}

/* Resume from the job's latest checkpoint when it has one; one that does
 * not load is reported and the run starts over (reopen makes a fresh run).
 * Returns 0 when the job failed. */
static int resume(run_ctx *x, bs_status (*reopen)(run_ctx *x, bs_error *err)) {
    store_checkpoint *ck = NULL;
    size_t n_ck = 0;
    bs_error err = {0};
    int ok = 1;
    if (latest_checkpoint(x->r, x->job->id, &ck, &n_ck, &err) == BS_OK && n_ck == 1) {
        if (x->ops->load(x->run, ck[0].path, &err) == BS_OK) {
            x->last_ckpt_step = x->ops->step(x->run);
        } else {
            add_event(x->r, x->job->id, "warn", "message", NULL, "Cannot resume from checkpoint %s (%s); starting over",
                      ck[0].id, err.msg);
            if (reopen(x, &err) != BS_OK) {
                fail_job(x->r, x->job, "training_failed", NULL, err.msg);
                ok = 0;
            }
        }
    }
    store_checkpoints_free(ck, n_ck);
    return ok;
}

/* Running: the start event, then after the loop: succeed, fail, or keep the
 * progress for a pause or a shutdown.  train runs the loop. */
static void run_and_finish(run_ctx *x, const srv_model *m, const char *what,
                           bs_status (*train)(run_ctx *x, int *finished, bs_error *err)) {
    ft_runner *r = x->r;
    const char *id = x->job->id;
    if (!transition(r, x->job, STORE_JOB_RUNNING)) return;
    int step = x->ops->step(x->run), total = x->ops->total_steps(x->run);
    if (step > 0) add_event(r, id, "info", "message", NULL, "Fine-tuning job resumed at step %d of %d", step, total);
    else add_event(r, id, "info", "message", NULL, "Fine-tuning job started: %d steps (%s)", total, what);
    int finished = 0;
    bs_error err = {0};
    if (train(x, &finished, &err) != BS_OK) {
        fail_job(r, x->job, "training_failed", NULL, err.msg);
        return;
    }
    if (finished) {
        succeed(x, m);
        return;
    }
    ft_request q = pending(r);
    if (q == REQ_PAUSE || q == REQ_SHUTDOWN) checkpoint_now(x);
    if (q == REQ_PAUSE)
        add_event(r, id, "info", "message", NULL, "Fine-tuning job paused at step %d", x->ops->step(x->run));
    if (q == REQ_SHUTDOWN) {
        pthread_mutex_lock(&r->mu);
        x->job->status = STORE_JOB_QUEUED;
        update_job(r, x->job);
        pthread_mutex_unlock(&r->mu);
        add_event(r, id, "info", "message", NULL, "The server stopped at step %d; the job continues on restart",
                  x->ops->step(x->run));
    }
}

/* Validating -> queued, with its events; 0 when a client intervened. */
static int files_validated(ft_runner *r, store_job *j, int validating) {
    if (!validating) return 1;
    if (!transition(r, j, STORE_JOB_QUEUED)) return 0;
    add_event(r, j->id, "info", "message", NULL, "Files validated, moving job to queued state");
    return 1;
}

/* The resolved hyperparameters replace the requested ones in the job. */
static void set_resolved(store_job *j, json_t *h) {
    char *resolved = h ? json_dumps(h, JSON_COMPACT | JSON_REAL_PRECISION(8)) : NULL;
    json_decref(h);
    if (resolved) {
        free(j->hyperparameters);
        j->hyperparameters = resolved;
    }
}

/* ---- supervised -------------------------------------------------------------- */

/* A job's run state: the context first, so the hooks' run_ctx is the frame. */
typedef struct sft_frame {
    run_ctx x;
    bs_model *model;
    sft_config c;
    dataset *train, *valid;
} sft_frame;

static int sft_step_op(const void *run) { return sft_step(run); }
static int sft_total_op(const void *run) { return sft_total_steps(run); }
static bs_status sft_save_op(void *run, const char *dir, bs_error *err) { return sft_save_checkpoint(run, dir, err); }
static bs_status sft_load_op(void *run, const char *dir, bs_error *err) { return sft_load_checkpoint(run, dir, err); }
static bs_status sft_export_op(void *run, const char *base, const char *dir, bs_error *err) {
    return sft_export(run, NULL, base, dir, err);
}
static int64_t sft_tokens_op(const void *run) { return sft_trained_tokens(run); }
static const run_ops sft_ops = {sft_step_op, sft_total_op, sft_save_op, sft_load_op, sft_export_op, sft_tokens_op};

static bs_status sft_reopen(run_ctx *x, bs_error *err) {
    sft_frame *f = (sft_frame *)x;
    sft_close(x->run);
    sft_run *run = NULL;
    bs_status st = sft_open(f->model, &f->c, f->train, f->valid, &run, err);
    x->run = run;
    return st;
}

static bs_status sft_train_op(run_ctx *x, int *finished, bs_error *err) {
    sft_hooks hooks = {.user = x, .on_step = on_step, .on_checkpoint = on_sft_checkpoint};
    return sft_train(x->run, x->ckpt_root, &hooks, finished, err);
}

static void run_sft(ft_runner *r, store_job *job, srv_model *m, const char *ckpt_root) {
    sft_frame f = {.x = {.r = r, .job = job, .ops = &sft_ops, .ckpt_root = ckpt_root}, .model = m->model};
    sft_config *c = &f.c;
    sft_config_default(c);
    c->seed = (uint64_t)job->seed;
    c->threads = r->threads;
    api_error a = {0};
    bs_error err = {0};
    json_t *h = json_loads(job->hyperparameters, 0, NULL);
    bs_status st = ft_hparams_decode(h, "hyperparameters", c, &a);
    json_decref(h);
    if (st != BS_OK) {
        fail_job(r, job, "invalid_hyperparameters", a.param, a.e.msg);
        return;
    }
    int validating = job->status == STORE_JOB_VALIDATING_FILES;
    if (validating) add_event(r, job->id, "info", "message", NULL, "Validating training file: %s", job->training_file);
    if (!open_data(r, job, m, job->training_file, "training_file", c, &f.train, NULL) ||
        (job->validation_file && !open_data(r, job, m, job->validation_file, "validation_file", c, &f.valid, NULL)) ||
        !files_validated(r, job, validating))
        goto out;
    if (sft_resolve(c, dataset_count(f.train), &err) != BS_OK) {
        fail_job(r, job, "invalid_hyperparameters", "hyperparameters", err.msg);
        goto out;
    }
    set_resolved(job, hparams_json(&sft_table, c));
    if (sft_reopen(&f.x, &err) != BS_OK) {
        fail_job(r, job, "training_failed", NULL, err.msg);
        goto out;
    }
    if (!resume(&f.x, sft_reopen)) goto out;
    char what[96];
    snprintf(what, sizeof what, "%d epochs of %zu examples", c->n_epochs, dataset_count(f.train));
    run_and_finish(&f.x, m, what, sft_train_op);
out:
    json_decref(f.x.last_metrics);
    sft_close(f.x.run);
    dataset_close(f.train);
    dataset_close(f.valid);
}

/* ---- reinforcement ----------------------------------------------------------- */

typedef struct rft_frame {
    run_ctx x; /* first, as in sft_frame */
    srv_model *m;
    rft_config c;
    bs_reward_grader *grader;
    rft_data *train, *valid;
} rft_frame;

static int rft_step_op(const void *run) { return rft_step(run); }
static int rft_total_op(const void *run) { return rft_total_steps(run); }
static bs_status rft_save_op(void *run, const char *dir, bs_error *err) { return rft_save_checkpoint(run, dir, err); }
static bs_status rft_load_op(void *run, const char *dir, bs_error *err) { return rft_load_checkpoint(run, dir, err); }
static bs_status rft_export_op(void *run, const char *base, const char *dir, bs_error *err) {
    return rft_export(run, NULL, base, dir, err);
}
static int64_t rft_tokens_op(const void *run) { return rft_trained_tokens(run); }
static const run_ops rft_ops = {rft_step_op, rft_total_op, rft_save_op, rft_load_op, rft_export_op, rft_tokens_op};

static bs_status rft_reopen(run_ctx *x, bs_error *err) {
    rft_frame *f = (rft_frame *)x;
    rft_close(x->run);
    rft_run *run = NULL;
    bs_status st = rft_open(f->m->model, f->m->sched, f->grader, &f->c, f->train, f->valid, &run, err);
    x->run = run;
    return st;
}

/* OpenAI's scores object: the grader's means, then one entry per metric
 * its samples carry (multi's sub-graders by key, metrics_list names). */
static json_t *rft_scores(const run_ctx *x, const rft_progress *p) {
    const rft_frame *f = (const rft_frame *)x;
    int valid = !isnan(p->valid_reward_mean);
    json_t *graders = json_array(), *top = json_pack("{s:s,s:s,s:f}", "name", reward_grader_name(f->grader), "type",
                                                    reward_grader_type(f->grader), "train_reward_mean",
                                                    p->train_reward_mean);
    if (valid) json_object_set_new(top, "valid_reward_mean", json_real(p->valid_reward_mean));
    json_array_append_new(graders, top);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)p->grader_scores, k, v) {
        json_t *e = json_pack("{s:s,s:O}", "name", k, "train_reward_mean", v);
        json_t *vv = json_object_get(p->valid_grader_scores, k);
        if (vv) json_object_set(e, "valid_reward_mean", vv);
        json_array_append_new(graders, e);
    }
    json_t *o = json_pack("{s:f,s:o}", "train_reward_mean", p->train_reward_mean, "graders", graders);
    if (valid) json_object_set_new(o, "valid_reward_mean", json_real(p->valid_reward_mean));
    return o;
}

/* Pruned checkpoints leave the job's list too. */
static bs_status on_rft_checkpoint_removed(void *user, const char *dir, bs_error *err) {
    run_ctx *x = user;
    store_page page = {.limit = 100};
    store_checkpoint *ck = NULL;
    size_t n = 0;
    int more = 0;
    bs_status st = store_checkpoint_list(x->r->store, x->job->id, &page, &ck, &n, &more, err);
    for (size_t i = 0; st == BS_OK && i < n; i++)
        if (strcmp(ck[i].path, dir) == 0) st = store_checkpoint_delete(x->r->store, ck[i].id, err);
    store_checkpoints_free(ck, n);
    return st;
}

static bs_status rft_train_op(run_ctx *x, int *finished, bs_error *err) {
    rft_hooks hooks = {.user = x, .on_step = on_rft_step, .on_checkpoint = on_rft_checkpoint,
                       .on_checkpoint_removed = on_rft_checkpoint_removed};
    bs_status st = rft_train(x->run, x->ckpt_root, &hooks, finished, err);
    double valid;
    int best = rft_best(x->run, &valid);
    if (st == BS_OK && *finished)
        snprintf(x->exported, sizeof x->exported,
                 best ? " from step %d, the best valid_reward_mean (%.4f)" : " from the last step (no validation file)",
                 best, valid);
    return st;
}

/* Rollouts go through the served model's own scheduler, so serving and
 * sampling share its batches. */
static void run_rft(ft_runner *r, store_job *job, srv_model *m, const json_t *method, const char *ckpt_root) {
    rft_frame f = {.x = {.r = r, .job = job, .ops = &rft_ops, .ckpt_root = ckpt_root}, .m = m};
    rft_config *c = &f.c;
    rft_config_default(c);
    c->seed = (uint64_t)job->seed;
    c->threads = r->threads;
    api_error a = {0};
    bs_error err = {0};
    json_t *h = json_loads(job->hyperparameters, 0, NULL);
    bs_status st = ft_rft_hparams_decode(h, "hyperparameters", c, &a);
    json_decref(h);
    if (st != BS_OK) {
        fail_job(r, job, "invalid_hyperparameters", a.param, a.e.msg);
        return;
    }
    const json_t *g = json_object_get(json_object_get(method, "reinforcement"), "grader");
    if (reward_grader_parse(g, &f.grader, &err) != BS_OK) {
        fail_job(r, job, "invalid_grader", "method.reinforcement.grader", err.msg);
        return;
    }
    int validating = job->status == STORE_JOB_VALIDATING_FILES;
    if (validating) add_event(r, job->id, "info", "message", NULL, "Validating training file: %s", job->training_file);
    if (!open_data(r, job, m, job->training_file, "training_file", NULL, NULL, &f.train) ||
        (job->validation_file &&
         !open_data(r, job, m, job->validation_file, "validation_file", NULL, NULL, &f.valid)) ||
        !files_validated(r, job, validating))
        goto out;
    if (rft_resolve(c, rft_data_count(f.train), &err) != BS_OK) {
        fail_job(r, job, "invalid_hyperparameters", "hyperparameters", err.msg);
        goto out;
    }
    set_resolved(job, hparams_json(&rft_table, c));
    if (rft_reopen(&f.x, &err) != BS_OK) {
        fail_job(r, job, "training_failed", NULL, err.msg);
        goto out;
    }
    if (!resume(&f.x, rft_reopen)) goto out;
    char what[160];
    snprintf(what, sizeof what, "%d epochs of %zu prompts, %d samples each, %s grader \"%s\"", c->n_epochs,
             rft_data_count(f.train), c->grpo.group_size, reward_grader_type(f.grader), reward_grader_name(f.grader));
    run_and_finish(&f.x, m, what, rft_train_op);
out:
    json_decref(f.x.last_metrics);
    rft_close(f.x.run);
    rft_data_close(f.train);
    rft_data_close(f.valid);
    reward_grader_free(f.grader);
}

static void run_job(ft_runner *r, const char *id) {
    store_job job;
    bs_error err = {0};
    if (store_job_get(r->store, id, &job, &err) != BS_OK) {
        bs_log_error("fine-tuning %s: %s", id, err.msg);
        return;
    }
    srv_model *m = served_model(r->s, job.model);
    char rel[96], msg[BS_ERROR_MSG_MAX + 64];
    snprintf(rel, sizeof rel, "ft/%s", id);
    char *ckpt_root = bs_path_join(r->s->data_dir, rel);
    json_t *method = json_loads(job.method ? job.method : "{}", 0, NULL);
    const char *type = json_string_value(json_object_get(method, "type"));
    if (!m) {
        snprintf(msg, sizeof msg, "model: %s is not served by this server", job.model);
        fail_job(r, &job, "model_not_found", "model", msg);
    } else if (!ckpt_root) {
        fail_job(r, &job, "training_failed", NULL, "out of memory");
    } else if (type && strcmp(type, "reinforcement") == 0) {
        run_rft(r, &job, m, method, ckpt_root);
    } else {
        run_sft(r, &job, m, ckpt_root);
    }
    json_decref(method);
    free(ckpt_root);
    store_job_clear(&job);
}

/* ---- the thread ------------------------------------------------------------ */

/* The oldest job waiting to be validated or trained; 0 when none. */
static int next_job(ft_runner *r, char *id, size_t cap) {
    store_page page = {.limit = 1, .ascending = 1};
    store_job *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    int more;
    bs_error err = {0};
    if (store_job_list(r->store, STORE_JOB_VALIDATING_FILES, &page, &a, &na, &more, &err) != BS_OK ||
        store_job_list(r->store, STORE_JOB_QUEUED, &page, &b, &nb, &more, &err) != BS_OK)
        bs_log_error("fine-tuning: listing jobs: %s", err.msg);
    const store_job *pick = na && (!nb || a[0].created_at <= b[0].created_at) ? &a[0] : nb ? &b[0] : NULL;
    if (pick) snprintf(id, cap, "%s", pick->id);
    store_jobs_free(a, na);
    store_jobs_free(b, nb);
    return pick != NULL;
}

static void *runner_main(void *arg) {
    ft_runner *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        char id[64];
        if (!next_job(r, id, sizeof id)) {
            pthread_cond_wait(&r->wake, &r->mu);
            continue;
        }
        snprintf(r->current, sizeof r->current, "%s", id);
        r->request = REQ_NONE;
        r->estimate = -1;
        pthread_mutex_unlock(&r->mu);
        run_job(r, id);
        pthread_mutex_lock(&r->mu);
        r->current[0] = '\0';
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Every job in status, page by page, to fn. */
static void for_each_job(ft_runner *r, store_job_status status, void (*fn)(ft_runner *r, store_job *j)) {
    char after[64] = "";
    for (;;) {
        store_page page = {.limit = 100, .after = after[0] ? after : NULL, .ascending = 1};
        store_job *items = NULL;
        size_t n = 0;
        int more = 0;
        bs_error err = {0};
        if (store_job_list(r->store, (int)status, &page, &items, &n, &more, &err) != BS_OK) {
            bs_log_error("fine-tuning: listing jobs: %s", err.msg);
            return;
        }
        for (size_t i = 0; i < n; i++) fn(r, &items[i]);
        if (n) snprintf(after, sizeof after, "%s", items[n - 1].id);
        store_jobs_free(items, n);
        if (!more || !n) return;
    }
}

static void requeue(ft_runner *r, store_job *j) {
    j->status = STORE_JOB_QUEUED;
    update_job(r, j);
    add_event(r, j->id, "info", "message", NULL,
              "The server restarted; the job continues from its last checkpoint");
}

static void serve_again(ft_runner *r, store_job *j) {
    bs_error err = {0};
    if (serve_adapter(r, j, &err) != BS_OK)
        bs_log_warn("fine-tuning %s: cannot serve %s: %s", j->id, j->fine_tuned_model, err.msg);
}

bs_status ft_runner_open(basalt_server *s, int train_threads, ft_runner **out, bs_error *err) {
    *out = NULL;
    ft_runner *r = calloc(1, sizeof *r);
    if (!r) return bs_fail(err, BS_ENOMEM, "out of memory");
    r->s = s;
    r->store = s->store;
    r->threads = train_threads > 0 ? train_threads : 1;
    r->estimate = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->wake, NULL);
    for_each_job(r, STORE_JOB_RUNNING, requeue);
    for_each_job(r, STORE_JOB_SUCCEEDED, serve_again);
    if (pthread_create(&r->thread, NULL, runner_main, r) != 0) {
        ft_runner_close(r);
        return bs_fail(err, BS_ENOMEM, "fine-tuning: cannot start the runner thread");
    }
    r->started = 1;
    *out = r;
    return BS_OK;
}

void ft_runner_close(ft_runner *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    if (r->current[0] && r->request == REQ_NONE) r->request = REQ_SHUTDOWN;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->mu);
    if (r->started) pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

long long ft_runner_estimate(ft_runner *r, const char *id) {
    pthread_mutex_lock(&r->mu);
    long long e = strcmp(r->current, id) == 0 ? r->estimate : -1;
    pthread_mutex_unlock(&r->mu);
    return e;
}

/* ---- client actions -------------------------------------------------------- */

static int is_final(store_job_status st) {
    return st == STORE_JOB_SUCCEEDED || st == STORE_JOB_FAILED || st == STORE_JOB_CANCELLED;
}

/* The new state of job j under action; a refusal names the job's status.
 * Under r->mu. */
static bs_status apply_action(ft_runner *r, store_job *j, ft_action action, api_error *a) {
    int current = strcmp(r->current, j->id) == 0;
    const char *was = store_job_status_name(j->status);
    switch (action) {
    case FT_CANCEL:
        if (is_final(j->status))
            return api_fail(a, BS_EINVAL, "fine_tuning_job_id", NULL, "Job %s has already %s; it cannot be cancelled",
                            j->id, was);
        j->status = STORE_JOB_CANCELLED;
        j->finished_at = unix_now();
        if (current) r->request = REQ_CANCEL;
        return BS_OK;
    case FT_PAUSE:
        if (is_final(j->status) || j->status == STORE_JOB_PAUSED)
            return api_fail(a, BS_EINVAL, "fine_tuning_job_id", NULL,
                            "Job %s is %s; only queued or running jobs can be paused", j->id, was);
        j->status = STORE_JOB_PAUSED;
        if (current && r->request != REQ_CANCEL) r->request = REQ_PAUSE;
        return BS_OK;
    default:
        if (j->status != STORE_JOB_PAUSED)
            return api_fail(a, BS_EINVAL, "fine_tuning_job_id", NULL, "Job %s is %s; only paused jobs can be resumed",
                            j->id, was);
        j->status = STORE_JOB_QUEUED;
        pthread_cond_signal(&r->wake);
        return BS_OK;
    }
}

bs_status ft_runner_act(ft_runner *r, const char *id, ft_action action, store_job *out, api_error *a) {
    pthread_mutex_lock(&r->mu);
    bs_status st = store_job_get(r->store, id, out, &a->e);
    if (st == BS_ENOTFOUND) {
        a->http = 404;
        api_fail(a, BS_ENOTFOUND, "fine_tuning_job_id", NULL, "No such fine-tuning job: %s", id);
    }
    if (st == BS_OK) st = apply_action(r, out, action, a);
    if (st == BS_OK && store_job_update(r->store, out, &a->e) != BS_OK) st = a->e.status;
    pthread_mutex_unlock(&r->mu);
    if (st != BS_OK) return st;
    static const char *const said[] = {"Fine-tuning job cancelled", "Fine-tuning job paused by request",
                                       "Fine-tuning job resumed"};
    add_event(r, id, "info", "message", NULL, "%s", said[action]);
    return BS_OK;
}

bs_status ft_runner_submit(ft_runner *r, const store_job *j, bs_error *err) {
    if (store_job_insert(r->store, j, err) != BS_OK) return err->status;
    add_event(r, j->id, "info", "message", NULL, "Created fine-tuning job");
    pthread_mutex_lock(&r->mu);
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->mu);
    return BS_OK;
}
