/* server/evals.c — the evaluation executor (see evals.h): testing criteria,
 * input messages, JSONL items, and the generate -> grade loop over windows
 * of items on a served model's scheduler. */
#include "server/evals.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The graders' own {{item.x}} templating, so input messages and criteria
 * read the item the same way. */
#include "reward/reward_impl.h"
#include "server/server_impl.h"

/* Items generated per engine job: enough to fill the scheduler's batch,
 * few enough that a cancel loses little work. */
#define EVAL_WINDOW 8

/* ---- testing criteria ------------------------------------------------------ */

void eval_criteria_clear(eval_criteria *c) {
    for (int i = 0; c->graders && i < c->n; i++) reward_grader_free(c->graders[i]);
    free(c->graders);
    free(c->pass_threshold);
    *c = (eval_criteria){0};
}

/* reward_grader_parse names fields from "grader"; an eval names them from
 * the criterion ("testing_criteria[1].operation"). */
static bs_status reroot(bs_error *err, const char *path) {
    const char *rest = strncmp(err->msg, "grader", 6) == 0 ? err->msg + 6 : NULL;
    char msg[BS_ERROR_MSG_MAX];
    if (rest) snprintf(msg, sizeof msg, "%s%s", path, rest);
    else snprintf(msg, sizeof msg, "%s: %s", path, err->msg);
    memcpy(err->msg, msg, sizeof msg);
    return err->status;
}

bs_status eval_criteria_parse(const json_t *criteria, const char *param, eval_criteria *out, bs_error *err) {
    *out = (eval_criteria){0};
    if (!json_is_array(criteria) || json_array_size(criteria) == 0)
        return bs_fail(err, BS_EINVAL, "%s: must be a non-empty array of graders", param);
    size_t n = json_array_size(criteria);
    out->graders = calloc(n, sizeof *out->graders);
    out->pass_threshold = calloc(n, sizeof *out->pass_threshold);
    if (!out->graders || !out->pass_threshold) {
        eval_criteria_clear(out);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *g = json_array_get(criteria, i);
        char path[160];
        snprintf(path, sizeof path, "%s[%zu]", param, i);
        if (reward_grader_parse(g, &out->graders[i], err) != BS_OK) {
            eval_criteria_clear(out);
            return reroot(err, path);
        }
        out->n++;
        const json_t *pt = json_object_get(g, "pass_threshold");
        if (json_is_number(pt)) {
            out->pass_threshold[i] = json_number_value(pt);
        } else if (strcmp(reward_grader_type(out->graders[i]), "text_similarity") == 0) {
            eval_criteria_clear(out);
            return bs_fail(err, BS_EINVAL, "%s.pass_threshold: required for a text_similarity testing criterion",
                           path);
        } else {
            out->pass_threshold[i] = 1.0;
        }
    }
    return BS_OK;
}

/* ---- input messages -------------------------------------------------------- */

void eval_input_clear(eval_input *in) {
    json_decref(in->template);
    free(in->item_reference);
    *in = (eval_input){0};
}

bs_status eval_input_parse(const json_t *im, const char *param, eval_input *out, bs_error *err) {
    *out = (eval_input){0};
    if (!json_is_object(im)) return bs_fail(err, BS_EINVAL, "%s: must be an object", param);
    const char *type = json_string_value(json_object_get(im, "type"));
    if (!type) return bs_fail(err, BS_EINVAL, "%s.type: required string (template or item_reference)", param);
    if (strcmp(type, "item_reference") == 0) {
        const char *ref = json_string_value(json_object_get(im, "item_reference"));
        if (!ref || strncmp(ref, "item.", 5) != 0 || !ref[5])
            return bs_fail(err, BS_EINVAL, "%s.item_reference: expected a string \"item.<field>\"", param);
        if (!(out->item_reference = strdup(ref + 5))) return bs_fail(err, BS_ENOMEM, "out of memory");
        return BS_OK;
    }
    if (strcmp(type, "template") != 0)
        return bs_fail(err, BS_EINVAL, "%s.type: unknown type \"%s\" (expected template or item_reference)", param,
                       type);
    const json_t *t = json_object_get(im, "template");
    if (!json_is_array(t) || json_array_size(t) == 0)
        return bs_fail(err, BS_EINVAL, "%s.template: must be a non-empty array of messages", param);
    size_t i;
    const json_t *msg;
    json_array_foreach(t, i, msg) {
        char path[192];
        snprintf(path, sizeof path, "%s.template[%zu]", param, i);
        if (!json_is_object(msg) || !json_is_string(json_object_get(msg, "role")))
            return bs_fail(err, BS_EINVAL, "%s: must be a message with a string role", path);
        const json_t *content = json_object_get(msg, "content");
        if (!json_is_string(content)) return bs_fail(err, BS_EINVAL, "%s.content: required string", path);
        snprintf(path + strlen(path), sizeof path - strlen(path), ".content");
        if (template_check(json_string_value(content), path, err) != BS_OK) return err->status;
    }
    if (!(out->template = json_deep_copy(t))) return bs_fail(err, BS_ENOMEM, "out of memory");
    return BS_OK;
}

/* The conversation for item; NULL with why filled when the item lacks it. */
static json_t *item_messages(const eval_input *in, const json_t *item, char *why, size_t cap) {
    if (in->item_reference) {
        const json_t *v = item;
        char key[256];
        for (const char *p = in->item_reference; v && *p;) {
            size_t n = strcspn(p, ".");
            snprintf(key, sizeof key, "%.*s", (int)(n < sizeof key ? n : sizeof key - 1), p);
            v = json_object_get(v, key);
            p += n + (p[n] == '.');
        }
        if (!json_is_array(v) || json_array_size(v) == 0) {
            snprintf(why, cap, "item.%s: not a non-empty array of messages", in->item_reference);
            return NULL;
        }
        return json_deep_copy(v);
    }
    json_t *msgs = json_deep_copy(in->template);
    size_t i;
    json_t *msg;
    json_array_foreach(msgs, i, msg) {
        char *text = template_render(json_string_value(json_object_get(msg, "content")), item, NULL, NULL);
        if (!text || json_object_set_new(msg, "content", json_string(text)) != 0) {
            free(text);
            json_decref(msgs);
            snprintf(why, cap, "out of memory");
            return NULL;
        }
        free(text);
    }
    return msgs;
}

/* ---- items ----------------------------------------------------------------- */

bs_status eval_items_read(const char *path, json_t **items, bs_error *err) {
    *items = NULL;
    FILE *f = fopen(path, "r");
    if (!f) return bs_fail(err, BS_EIO, "%s: cannot open", path);
    json_t *a = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int no = 0;
    bs_status st = a ? BS_OK : bs_fail(err, BS_ENOMEM, "out of memory");
    while (st == BS_OK && (len = getline(&line, &cap, f)) >= 0) {
        no++;
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        json_error_t je;
        json_t *row = json_loadb(line, (size_t)len, 0, &je);
        json_t *item = json_object_get(row, "item");
        if (!row) st = bs_fail(err, BS_EFORMAT, "%s:%d: %s", path, no, je.text);
        else if (!json_is_object(row)) st = bs_fail(err, BS_EFORMAT, "%s:%d: not a JSON object", path, no);
        else if (item && !json_is_object(item)) st = bs_fail(err, BS_EFORMAT, "%s:%d: item: must be an object", path, no);
        else if (json_array_append(a, item ? item : row) != 0) st = bs_fail(err, BS_ENOMEM, "out of memory");
        json_decref(row);
    }
    free(line);
    fclose(f);
    if (st == BS_OK && json_array_size(a) == 0) st = bs_fail(err, BS_EFORMAT, "%s: no items", path);
    if (st != BS_OK) json_decref(a);
    else *items = a;
    return st;
}

/* ---- totals ---------------------------------------------------------------- */

bs_status eval_totals_init(eval_totals *t, int n, bs_error *err) {
    *t = (eval_totals){0};
    size_t k = n > 0 ? (size_t)n : 1;
    t->crit_passed = calloc(k, sizeof *t->crit_passed);
    t->crit_failed = calloc(k, sizeof *t->crit_failed);
    t->crit_scored = calloc(k, sizeof *t->crit_scored);
    t->crit_score_sum = calloc(k, sizeof *t->crit_score_sum);
    if (!t->crit_passed || !t->crit_failed || !t->crit_scored || !t->crit_score_sum) {
        eval_totals_clear(t);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    return BS_OK;
}

void eval_totals_clear(eval_totals *t) {
    free(t->crit_passed);
    free(t->crit_failed);
    free(t->crit_scored);
    free(t->crit_score_sum);
    *t = (eval_totals){0};
}

/* ---- one window of items --------------------------------------------------- */

typedef struct slot {
    srv_buf text;
    int tokens;
    char finish[16];
} slot;

typedef struct window {
    size_t first;
    int n, S;            /* items, samples per item */
    json_t **msgs;       /* [n] */
    int32_t **ids;       /* [n] */
    int *n_ids;          /* [n] */
    char (*why)[256];    /* [n]: why the item was not generated, "" when it was */
    int *job_item;       /* the job's prompt index -> item in the window */
    slot *slots;         /* [n * S] */
    double *scores;      /* [n * S * criteria] */
} window;

static void window_free(window *w) {
    for (int i = 0; i < w->n; i++) {
        json_decref(w->msgs ? w->msgs[i] : NULL);
        free(w->ids ? w->ids[i] : NULL);
    }
    for (int i = 0; w->slots && i < w->n * w->S; i++) buf_free(&w->slots[i].text);
    free(w->msgs);
    free(w->ids);
    free(w->n_ids);
    free(w->why);
    free(w->job_item);
    free(w->slots);
    free(w->scores);
}

static slot *choice_slot(window *w, int choice) { return &w->slots[w->job_item[choice / w->S] * w->S + choice % w->S]; }

static void on_token(void *user, int choice, const bs_request_event *ev) {
    (void)ev;
    choice_slot(user, choice)->tokens++;
}

static void on_text(void *user, int choice, const char *s, size_t n) { buf_append(&choice_slot(user, choice)->text, s, n); }

static void on_finish(void *user, int choice, const char *reason) {
    slot *sl = choice_slot(user, choice);
    snprintf(sl->finish, sizeof sl->finish, "%s", reason);
}

static int is_cancelled(const eval_hooks *h) { return h && h->cancelled && h->cancelled(h->user); }

static void nap(void) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* Render each item's conversation and generate its samples. */
static bs_status generate(const srv_model *m, job_registry *jobs, const eval_input *in, const json_t *items,
                          const eval_sampling *sp, const eval_hooks *h, window *w, bs_error *err) {
    const int32_t **prompts = calloc((size_t)w->n, sizeof *prompts);
    int *lens = calloc((size_t)w->n, sizeof *lens), count = 0;
    if (!prompts || !lens) {
        free(prompts);
        free(lens);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    for (int i = 0; i < w->n; i++) {
        const json_t *item = json_array_get(items, w->first + (size_t)i);
        if (!(w->msgs[i] = item_messages(in, item, w->why[i], sizeof w->why[i]))) continue;
        api_error a = {0};
        char *text = NULL;
        size_t n_ids = 0;
        if (render_chat_prompt(m, w->msgs[i], NULL, 1, NULL, &text, &w->ids[i], &n_ids, &a) != BS_OK) {
            snprintf(w->why[i], sizeof w->why[i], "input_messages: %s", a.e.msg);
        } else if ((long long)n_ids + sp->max_tokens > m->n_ctx) {
            snprintf(w->why[i], sizeof w->why[i],
                     "the prompt (%zu tokens) and max_completion_tokens (%d) exceed the model's context of %d tokens",
                     n_ids, sp->max_tokens, m->n_ctx);
        } else {
            w->n_ids[i] = (int)n_ids;
            w->job_item[count] = i;
            prompts[count] = w->ids[i];
            lens[count++] = (int)n_ids;
        }
        free(text);
    }
    bs_status st = BS_OK;
    if (count > 0) {
        job_params jp = {.sched = m->sched, .tok = m->tok, .registry = jobs,
                         .req = {.kind = BS_REQUEST_GENERATE, .n = w->S, .max_tokens = sp->max_tokens, .adapter = m->adapter},
                         .prompts = prompts, .n_prompts = lens, .n_requests = count, .trie = m->trie};
        sampler_params_default(&jp.req.sampling);
        jp.req.sampling.temperature = sp->temperature;
        jp.req.sampling.top_p = sp->top_p;
        jp.req.sampling.seed = sp->seed + w->first;
        gen_job *j = NULL;
        while ((st = job_start(&jp, &j, err)) == BS_EBUSY && !is_cancelled(h)) nap();
        if (st == BS_EBUSY) st = BS_OK; /* cancelled while the queue was full */
        job_sink sink = {.user = w, .token = on_token, .text = on_text, .finish = on_finish};
        while (j && job_pump(j, NULL, &sink) == 1 && !is_cancelled(h)) {
        }
        job_free(j);
    }
    free(prompts);
    free(lens);
    return st;
}

/* Score every generated sample with criterion k into w->scores. */
static bs_status grade(const eval_criteria *c, int k, const json_t *items, window *w, reward_errors *errs,
                       bs_error *err) {
    int total = w->n * w->S, n = 0;
    reward_sample *rs = calloc((size_t)total, sizeof *rs);
    json_t **convs = calloc((size_t)total, sizeof *convs);
    int *at = calloc((size_t)total, sizeof *at);
    double *scores = calloc((size_t)total, sizeof *scores);
    bs_status st = rs && convs && at && scores ? BS_OK : bs_fail(err, BS_ENOMEM, "out of memory");
    for (int s = 0; st == BS_OK && s < total; s++) {
        w->scores[(size_t)s * (size_t)c->n + (size_t)k] = NAN;
        slot *sl = &w->slots[s];
        int i = s / w->S;
        if (w->why[i][0] || (strcmp(sl->finish, "stop") != 0 && strcmp(sl->finish, "length") != 0)) continue;
        const char *text = sl->text.data ? sl->text.data : "";
        convs[n] = json_deep_copy(w->msgs[i]);
        if (!convs[n] || json_array_append_new(convs[n], json_pack("{s:s,s:s}", "role", "assistant", "content", text)))
            st = bs_fail(err, BS_ENOMEM, "out of memory");
        rs[n] = (reward_sample){.messages = convs[n], .output_text = text, .item = json_array_get(items, w->first + (size_t)i)};
        at[n++] = s;
    }
    if (st == BS_OK && n > 0) st = reward_score_batch(c->graders[k], rs, n, scores, errs, NULL, err);
    for (int i = 0; st == BS_OK && i < n; i++) w->scores[(size_t)at[i] * (size_t)c->n + (size_t)k] = scores[i];
    for (int i = 0; convs && i < n; i++) json_decref(convs[i]);
    free(rs);
    free(convs);
    free(at);
    free(scores);
    return st;
}

/* Report and count each sample of a graded window. */
static void report(const eval_criteria *c, const eval_hooks *h, const reward_errors *errs, window *w,
                   eval_totals *t) {
    int *passed = calloc((size_t)c->n, sizeof *passed);
    for (int s = 0; passed && s < w->n * w->S; s++) {
        int i = s / w->S;
        slot *sl = &w->slots[s];
        const double *sc = w->scores + (size_t)s * (size_t)c->n;
        char why[BS_ERROR_MSG_MAX + 96] = "";
        int generated = !w->why[i][0] && (strcmp(sl->finish, "stop") == 0 || strcmp(sl->finish, "length") == 0);
        if (w->why[i][0]) snprintf(why, sizeof why, "%s", w->why[i]);
        else if (!generated) snprintf(why, sizeof why, "generation failed (finish_reason \"%s\")", sl->finish);
        int all = 1;
        for (int k = 0; k < c->n; k++) {
            passed[k] = !isnan(sc[k]) && sc[k] >= c->pass_threshold[k];
            all &= passed[k];
            if (generated && isnan(sc[k]) && !why[0])
                snprintf(why, sizeof why, "testing_criteria[%d] (%s) could not score the sample: %s", k,
                         reward_grader_name(c->graders[k]), errs[k].first[0] ? errs[k].first : "no score");
            if (!generated) continue;
            if (!isnan(sc[k])) {
                t->crit_scored[k]++;
                t->crit_score_sum[k] += sc[k];
            }
            if (passed[k]) t->crit_passed[k]++;
            else t->crit_failed[k]++;
        }
        const char *status = why[0] ? "error" : all ? "pass" : "fail";
        t->total++;
        if (why[0]) t->errored++;
        else if (all) t->passed++;
        else t->failed++;
        t->prompt_tokens += w->n_ids[i];
        t->completion_tokens += sl->tokens;
        if (h && h->on_sample) {
            eval_sample_result r = {.item = w->first + (size_t)i, .sample = s % w->S, .messages = w->msgs[i],
                                    .output_text = generated ? (sl->text.data ? sl->text.data : "") : NULL,
                                    .finish_reason = sl->finish[0] ? sl->finish : NULL,
                                    .prompt_tokens = w->n_ids[i], .completion_tokens = sl->tokens, .scores = sc,
                                    .passed = passed, .error = why[0] ? why : NULL, .status = status};
            h->on_sample(h->user, &r);
        }
    }
    free(passed);
}

static bs_status window_open(window *w, size_t first, int n, int S, int n_criteria, bs_error *err) {
    *w = (window){.first = first, .n = n, .S = S};
    w->msgs = calloc((size_t)n, sizeof *w->msgs);
    w->ids = calloc((size_t)n, sizeof *w->ids);
    w->n_ids = calloc((size_t)n, sizeof *w->n_ids);
    w->why = calloc((size_t)n, sizeof *w->why);
    w->job_item = calloc((size_t)n, sizeof *w->job_item);
    w->slots = calloc((size_t)n * (size_t)S, sizeof *w->slots);
    w->scores = calloc((size_t)n * (size_t)S * (size_t)n_criteria, sizeof *w->scores);
    if (!w->msgs || !w->ids || !w->n_ids || !w->why || !w->job_item || !w->slots || !w->scores)
        return bs_fail(err, BS_ENOMEM, "out of memory");
    return BS_OK;
}

bs_status eval_execute(const srv_model *m, job_registry *jobs, const eval_criteria *c, const eval_input *in,
                       const json_t *items, const eval_sampling *sp_in, const eval_hooks *h, eval_totals *t,
                       bs_error *err) {
    eval_sampling sp = *sp_in;
    if (sp.max_tokens <= 0) sp.max_tokens = 256;
    if (sp.samples <= 0) sp.samples = 1;
    reward_errors *errs = calloc((size_t)c->n, sizeof *errs);
    if (!errs) return bs_fail(err, BS_ENOMEM, "out of memory");
    size_t n_items = json_array_size(items);
    bs_status st = BS_OK;
    for (size_t first = 0; st == BS_OK && first < n_items && !is_cancelled(h); first += EVAL_WINDOW) {
        int n = (int)(n_items - first < EVAL_WINDOW ? n_items - first : EVAL_WINDOW);
        window w;
        st = window_open(&w, first, n, sp.samples, c->n, err);
        if (st == BS_OK) st = generate(m, jobs, in, items, &sp, h, &w, err);
        if (st == BS_OK && is_cancelled(h)) { /* a cut-short window is not graded */
            window_free(&w);
            break;
        }
        for (int k = 0; st == BS_OK && k < c->n; k++) {
            errs[k] = (reward_errors){0};
            st = grade(c, k, items, &w, &errs[k], err);
        }
        if (st == BS_OK) report(c, h, errs, &w, t);
        window_free(&w);
    }
    free(errs);
    return st;
}
