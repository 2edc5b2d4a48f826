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
    int integer;       /* 1: an integer */
    double lo, hi;     /* allowed range */
    int lo_open;       /* lo itself excluded */
    int openai;        /* one of OpenAI's (others are basalt's) */
} hparam;

static const hparam hparams[] = {
    {"n_epochs", 1, 1, 50, 0, 1},
    {"batch_size", 1, 1, 256, 0, 1},
    {"learning_rate_multiplier", 0, 0, 1e4, 1, 1},
    {"lora_rank", 1, 1, BS_ADAPTER_MAX_RANK, 0, 0},
    {"lora_alpha", 0, 0, 1e6, 1, 0},
    {"lora_dropout", 0, 0, 0.999999, 0, 0},
    {"max_length", 1, 2, 1 << 20, 0, 0},
    {"warmup_ratio", 0, 0, 0.999999, 0, 0},
    {"checkpoint_every", 1, 1, 1e9, 0, 0},
    {"eval_every", 1, 1, 1e9, 0, 0},
};
#define N_HPARAMS (sizeof hparams / sizeof hparams[0])

static void hparam_set(sft_config *c, size_t i, double v) {
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

static double hparam_get(const sft_config *c, size_t i) {
    const double v[N_HPARAMS] = {c->n_epochs,   c->batch_size,   c->lr_multiplier,    c->lora.rank,
                                 c->lora.alpha, c->lora.dropout, c->max_length,       c->warmup_ratio,
                                 c->checkpoint_every, c->eval_every};
    return v[i];
}

bs_status ft_hparams_decode(const json_t *h, const char *prefix, sft_config *c, api_error *a) {
    if (!h || json_is_null(h)) return BS_OK;
    if (!json_is_object(h)) return api_fail(a, BS_EINVAL, prefix, NULL, "%s: expected an object", prefix);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)h, key, v) {
        char param[128];
        snprintf(param, sizeof param, "%s.%s", prefix, key);
        size_t i = 0;
        while (i < N_HPARAMS && strcmp(hparams[i].name, key) != 0) i++;
        if (i == N_HPARAMS)
            return api_fail(a, BS_EINVAL, param, NULL,
                            "%s: unknown hyperparameter (n_epochs, batch_size, learning_rate_multiplier; basalt: "
                            "lora_rank, lora_alpha, lora_dropout, max_length, warmup_ratio, checkpoint_every, "
                            "eval_every)",
                            param);
        const hparam *p = &hparams[i];
        if (json_is_null(v) || (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0)) continue;
        double x = json_number_value(v);
        int ok = json_is_number(v) && (!p->integer || json_is_integer(v)) && x <= p->hi &&
                 (p->lo_open ? x > p->lo : x >= p->lo);
        if (!ok)
            return api_fail(a, BS_EINVAL, param, NULL, "%s: expected \"auto\" or %s %s %g and <= %g", param,
                            p->integer ? "an integer" : "a number", p->lo_open ? ">" : ">=", p->lo, p->hi);
        if (c) hparam_set(c, i, x);
    }
    return BS_OK;
}

/* The resolved values, as the job shows them once running. */
static json_t *hparams_json(const sft_config *c) {
    json_t *o = json_object();
    for (size_t i = 0; i < N_HPARAMS; i++) {
        double v = hparam_get(c, i);
        json_object_set_new(o, hparams[i].name, hparams[i].integer ? json_integer((json_int_t)v) : json_real(v));
    }
    return o;
}

/* ---- the runner's view of a job -------------------------------------------- */

typedef struct run_ctx {
    ft_runner *r;
    store_job *job;
    char *ckpt_root;
    int last_ckpt_step;
    double train_loss; /* of the last step, for a checkpoint made on request */
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

/* Open one of the job's files; fails the job (param names the field) on any
 * problem, with the line-numbered report for bad data. */
static int open_data(ft_runner *r, store_job *j, const srv_model *m, const char *file_id, const char *param,
                     const sft_config *c, dataset **out) {
    store_file f;
    bs_error err = {0};
    char code[64], msg[1024];
    snprintf(code, sizeof code, "invalid_%s", param);
    if (store_file_get(r->store, file_id, &f, &err) != BS_OK) {
        snprintf(msg, sizeof msg, "%s: the file %s no longer exists", param, file_id);
        fail_job(r, j, code, param, msg);
        return 0;
    }
    dataset_opts o;
    sft_dataset_opts(c, &o);
    char *report = NULL;
    bs_status st = dataset_open(f.path, DATASET_AUTO, m->tok, m->tmpl, &o, out, &report, &err);
    if (st != BS_OK) {
        char *text = NULL;
        size_t len = 0;
        FILE *mf = open_memstream(&text, &len);
        if (mf) {
            if (report) fprintf(mf, "%s: %s has %s:\n%s", param, file_id, "problems", report);
            else fprintf(mf, "%s: %s cannot be read: %s", param, file_id, err.msg);
            fclose(mf);
        }
        fail_job(r, j, code, param, text ? text : err.msg);
        free(text);
    }
    free(report);
    store_file_clear(&f);
    return st == BS_OK;
}

static int on_step(void *user, const sft_progress *p) {
    run_ctx *x = user;
    json_t *d = json_pack("{s:i,s:i,s:i,s:f,s:f,s:f,s:f,s:I,s:f}", "step", p->step, "total_steps", p->total_steps,
                          "epoch", p->epoch, "train_loss", p->train_loss, "learning_rate", p->lr, "grad_norm",
                          p->grad_norm, "tokens_per_second", p->tokens_per_s, "trained_tokens",
                          (json_int_t)p->trained_tokens, "eta_seconds", p->eta_s);
    char valid[64] = "";
    if (!isnan(p->valid_loss)) {
        json_object_set_new(d, "valid_loss", json_real(p->valid_loss));
        snprintf(valid, sizeof valid, ", validation loss=%.4f", p->valid_loss);
    }
    add_event(x->r, x->job->id, "info", "metrics", d, "Step %d/%d: training loss=%.4f%s", p->step, p->total_steps,
              p->train_loss, valid);
    x->train_loss = p->train_loss;
    pthread_mutex_lock(&x->r->mu);
    x->r->estimate = unix_now() + (long long)ceil(p->eta_s);
    ft_request q = x->r->request;
    pthread_mutex_unlock(&x->r->mu);
    return q != REQ_NONE;
}

/* Records a checkpoint directory written at p->step. */
static bs_status record_checkpoint(run_ctx *x, int step, double train_loss, double valid_loss, const char *dir,
                                   bs_error *err) {
    char id[48], model[512];
    random_id("ftckpt_", id, sizeof id);
    json_t *m = json_pack("{s:i,s:f}", "step", step, "train_loss", train_loss);
    if (!isnan(valid_loss)) {
        json_object_set_new(m, "valid_loss", json_real(valid_loss));
        json_object_set_new(m, "full_valid_loss", json_real(valid_loss));
    }
    char *metrics = json_dumps(m, JSON_COMPACT);
    json_decref(m);
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

static bs_status on_checkpoint(void *user, const sft_progress *p, const char *dir, bs_error *err) {
    return record_checkpoint(user, p->step, p->train_loss, p->valid_loss, dir, err);
}

/* Pause and shutdown: keep the progress since the last checkpoint. */
static void checkpoint_now(run_ctx *x, sft_run *run) {
    int step = sft_step(run);
    if (step == 0 || step == x->last_ckpt_step) return;
    char name[32];
    snprintf(name, sizeof name, "checkpoint-%d", step);
    char *dir = bs_path_join(x->ckpt_root, name);
    bs_error err = {0};
    bs_status st = dir ? bs_make_dirs(x->ckpt_root, 0755, &err) : bs_fail(&err, BS_ENOMEM, "out of memory");
    if (st == BS_OK) st = sft_save_checkpoint(run, dir, &err);
    if (st == BS_OK) st = record_checkpoint(x, step, x->train_loss, NAN, dir, &err);
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
    if (st == BS_OK) st = server_register_adapter(r->s, j->fine_tuned_model, a, j->model, err);
    adapter_close(a);
    free(dir);
    return st;
}

/* Training finished: the adapter goes to DATA/models/ft/<id>/ and is served. */
static void succeed(run_ctx *x, sft_run *run, const srv_model *m) {
    ft_runner *r = x->r;
    store_job *j = x->job;
    char rel[96], model[512];
    snprintf(rel, sizeof rel, "models/ft/%s", j->id);
    char *dir = bs_path_join(r->s->data_dir, rel);
    bs_error err = {0};
    ft_model_name(j->model, j->suffix, j->id, model, sizeof model);
    bs_status st = dir ? sft_export(run, NULL, m->name, dir, &err) : bs_fail(&err, BS_ENOMEM, "out of memory");
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
        j->trained_tokens = sft_trained_tokens(run);
        st = serve_adapter(r, j, &err);
        if (st == BS_OK) update_job(r, j);
    }
    pthread_mutex_unlock(&r->mu);
    if (st != BS_OK) {
        fail_job(r, j, "serve_failed", NULL, err.msg);
        return;
    }
    if (j->status != STORE_JOB_SUCCEEDED) return;
    add_event(r, j->id, "info", "message", NULL, "New fine-tuned model created: %s", model);
    add_event(r, j->id, "info", "message", NULL, "The job has successfully completed");
}

static bs_status latest_checkpoint(ft_runner *r, const char *job, store_checkpoint **c, size_t *n, bs_error *err) {
    store_page page = {.limit = 1};
    int more;
    return store_checkpoint_list(r->store, job, &page, c, n, &more, err);
}

static void run_job(ft_runner *r, const char *id) {
    store_job job;
    bs_error err = {0};
    if (store_job_get(r->store, id, &job, &err) != BS_OK) {
        bs_log_error("fine-tuning %s: %s", id, err.msg);
        return;
    }
    run_ctx x = {.r = r, .job = &job};
    dataset *train = NULL, *valid = NULL;
    sft_run *run = NULL;
    json_t *h = NULL;
    store_checkpoint *ck = NULL;
    size_t n_ck = 0;
    srv_model *m = served_model(r->s, job.model);
    sft_config c;
    sft_config_default(&c);
    c.seed = (uint64_t)job.seed;
    c.threads = r->threads;
    api_error a = {0};
    char msg[BS_ERROR_MSG_MAX + 64];
    if (!m) {
        snprintf(msg, sizeof msg, "model: %s is not served by this server", job.model);
        fail_job(r, &job, "model_not_found", "model", msg);
        goto out;
    }
    h = json_loads(job.hyperparameters, 0, NULL);
    if (ft_hparams_decode(h, "hyperparameters", &c, &a) != BS_OK) {
        fail_job(r, &job, "invalid_hyperparameters", a.param, a.e.msg);
        goto out;
    }
    int validating = job.status == STORE_JOB_VALIDATING_FILES;
    if (validating) add_event(r, id, "info", "message", NULL, "Validating training file: %s", job.training_file);
    if (!open_data(r, &job, m, job.training_file, "training_file", &c, &train) ||
        (job.validation_file && !open_data(r, &job, m, job.validation_file, "validation_file", &c, &valid)))
        goto out;
    if (validating) {
        if (!transition(r, &job, STORE_JOB_QUEUED)) goto out;
        add_event(r, id, "info", "message", NULL, "Files validated, moving job to queued state");
    }
    if (sft_resolve(&c, dataset_count(train), &err) != BS_OK) {
        fail_job(r, &job, "invalid_hyperparameters", "hyperparameters", err.msg);
        goto out;
    }
    char *resolved = json_dumps(hparams_json(&c), JSON_COMPACT | JSON_REAL_PRECISION(8));
    json_decref(h);
    h = NULL;
    if (resolved) {
        free(job.hyperparameters);
        job.hyperparameters = resolved;
    }
    if (sft_open(m->model, &c, train, valid, &run, &err) != BS_OK) {
        fail_job(r, &job, "training_failed", NULL, err.msg);
        goto out;
    }
    char rel[96];
    snprintf(rel, sizeof rel, "ft/%s", id);
    x.ckpt_root = bs_path_join(r->s->data_dir, rel);
    if (latest_checkpoint(r, id, &ck, &n_ck, &err) == BS_OK && n_ck == 1) {
        if (sft_load_checkpoint(run, ck[0].path, &err) == BS_OK) {
            x.last_ckpt_step = sft_step(run);
        } else {
            add_event(r, id, "warn", "message", NULL, "Cannot resume from checkpoint %s (%s); starting over", ck[0].id,
                      err.msg);
            sft_close(run);
            run = NULL;
            if (sft_open(m->model, &c, train, valid, &run, &err) != BS_OK) {
                fail_job(r, &job, "training_failed", NULL, err.msg);
                goto out;
            }
        }
    }
    if (!x.ckpt_root || !transition(r, &job, STORE_JOB_RUNNING)) goto out;
    if (sft_step(run) > 0)
        add_event(r, id, "info", "message", NULL, "Fine-tuning job resumed at step %d of %d", sft_step(run),
                  sft_total_steps(run));
    else
        add_event(r, id, "info", "message", NULL, "Fine-tuning job started: %d steps (%d epochs of %zu examples)",
                  sft_total_steps(run), c.n_epochs, dataset_count(train));
    int finished = 0;
    sft_hooks hooks = {.user = &x, .on_step = on_step, .on_checkpoint = on_checkpoint};
    if (sft_train(run, x.ckpt_root, &hooks, &finished, &err) != BS_OK) {
        fail_job(r, &job, "training_failed", NULL, err.msg);
    } else if (finished) {
        succeed(&x, run, m);
    } else {
        ft_request q = pending(r);
        if (q == REQ_PAUSE || q == REQ_SHUTDOWN) checkpoint_now(&x, run);
        if (q == REQ_PAUSE)
            add_event(r, id, "info", "message", NULL, "Fine-tuning job paused at step %d", sft_step(run));
        if (q == REQ_SHUTDOWN) {
            pthread_mutex_lock(&r->mu);
            job.status = STORE_JOB_QUEUED;
            update_job(r, &job);
            pthread_mutex_unlock(&r->mu);
            add_event(r, id, "info", "message", NULL, "The server stopped at step %d; the job continues on restart",
                      sft_step(run));
        }
    }
out:
    store_checkpoints_free(ck, n_ck);
    json_decref(h);
    sft_close(run);
    dataset_close(train);
    dataset_close(valid);
    free(x.ckpt_root);
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
