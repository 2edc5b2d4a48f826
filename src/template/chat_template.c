/* template/chat_template.c — finding a model's chat template and special
 * token strings, and rendering conversations through the Jinja interpreter. */
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/log.h"
#include "format/gguf.h"
#include "template/chat_template.h"
#include "template/jinja.h"

struct chat_template {
    char *source, *bos, *eos;
    jinja_template *jinja;
    time_t now;
};

/* The ChatML template Hugging Face used as its default before templates
 * shipped with every model. */
static const char CHATML[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

bs_status chat_template_open(const char *source, const char *bos_token, const char *eos_token, chat_template **out,
                             bs_error *err) {
    *out = NULL;
    chat_template *t = calloc(1, sizeof *t);
    if (!t) return bs_fail(err, BS_ENOMEM, "out of memory");
    t->source = strdup(source ? source : "");
    t->bos = strdup(bos_token ? bos_token : "");
    t->eos = strdup(eos_token ? eos_token : "");
    if (!t->source || !t->bos || !t->eos) {
        chat_template_close(t);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    bs_status s = jinja_parse(t->source, "chat_template", &t->jinja, err);
    if (s != BS_OK) {
        chat_template_close(t);
        return s;
    }
    *out = t;
    return BS_OK;
}

void chat_template_close(chat_template *t) {
    if (!t) return;
    jinja_free(t->jinja);
    free(t->source);
    free(t->bos);
    free(t->eos);
    free(t);
}

const char *chat_template_source(const chat_template *t) { return t->source; }
const char *chat_template_bos(const chat_template *t) { return t->bos; }
const char *chat_template_eos(const chat_template *t) { return t->eos; }
void chat_template_pin_clock(chat_template *t, time_t now) { t->now = now; }

/* ---- Hugging Face directories ------------------------------------------- */

/* bos_token / eos_token: a string or an AddedToken {"content": ...}. */
static const char *token_string(const json_t *config, const char *key) {
    const json_t *v = json_object_get(config, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : "";
}

static bs_status pick_named(const char *path, const json_t *list, const char *name, const char **out, bs_error *err) {
    const char *want[] = {name, "default"};
    for (int k = 0; k < 2; k++) {
        if (!want[k]) continue;
        size_t i;
        const json_t *item;
        json_array_foreach(list, i, item) {
            const json_t *n = json_object_get(item, "name"), *tmpl = json_object_get(item, "template");
            if (json_is_string(n) && json_is_string(tmpl) && !strcmp(json_string_value(n), want[k])) {
                if (k == 1 && name && strcmp(name, "default") != 0)
                    bs_log_debug("%s: no chat template named '%s', using 'default'", path, name);
                *out = json_string_value(tmpl);
                return BS_OK;
            }
        }
    }
    return bs_fail(err, BS_ENOTFOUND, "%s: chat_template list has no \"default\" entry%s%s", path,
                   name ? " and none named " : "", name ? name : "");
}

static bs_status open_hf(const char *dir, const char *name, chat_template **out, bs_error *err) {
    char *config_path = bs_path_join(dir, "tokenizer_config.json");
    char *jinja_path = bs_path_join(dir, "chat_template.jinja");
    json_t *config = NULL;
    char *file_source = NULL;
    bs_status s = BS_OK;
    if (!config_path || !jinja_path) {
        s = bs_fail(err, BS_ENOMEM, "out of memory");
        goto done;
    }
    if (bs_file_exists(config_path)) {
        json_error_t jerr;
        config = json_load_file(config_path, JSON_REJECT_DUPLICATES, &jerr);
        if (!config || !json_is_object(config)) {
            s = bs_fail(err, BS_EFORMAT, "%s:%d:%d: %s", config_path, jerr.line, jerr.column,
                        config ? "not a JSON object" : jerr.text);
            goto done;
        }
    }
    const char *source = NULL;
    const json_t *ct = json_object_get(config, "chat_template");
    if (json_is_string(ct)) {
        source = json_string_value(ct);
    } else if (json_is_array(ct)) {
        s = pick_named(config_path, ct, name, &source, err);
        if (s != BS_OK) goto done;
    } else if (ct && !json_is_null(ct)) {
        s = bs_fail(err, BS_EFORMAT, "%s: \"chat_template\" must be a string or a list of {name, template}", config_path);
        goto done;
    } else if (bs_file_exists(jinja_path)) {
        size_t n;
        s = bs_file_read(jinja_path, &file_source, &n, err);
        if (s != BS_OK) goto done;
        source = file_source;
    } else {
        bs_log_debug("%s: no chat template in tokenizer_config.json or chat_template.jinja; using ChatML", dir);
        source = CHATML;
    }
    s = chat_template_open(source, token_string(config, "bos_token"), token_string(config, "eos_token"), out, err);
    if (s != BS_OK) bs_wrap(err, "%s", dir);
done:
    json_decref(config);
    free(file_source);
    free(config_path);
    free(jinja_path);
    return s;
}

/* ---- GGUF --------------------------------------------------------------- */

static char *vocab_token(const gguf_file *g, const char *id_key) {
    const gguf_value *id = gguf_get(g, id_key), *tokens = gguf_get(g, "tokenizer.ggml.tokens");
    if (!id || !tokens || tokens->type != GGUF_TYPE_ARRAY || tokens->arr.elem_type != GGUF_TYPE_STRING)
        return strdup("");
    uint64_t i = id->type <= GGUF_TYPE_INT32 || id->type == GGUF_TYPE_UINT64 || id->type == GGUF_TYPE_INT64 ? id->u : UINT64_MAX;
    if (i >= tokens->arr.count) return strdup("");
    return strndup(tokens->arr.strs[i].ptr, tokens->arr.strs[i].len);
}

static bs_status open_gguf(const char *path, const char *name, chat_template **out, bs_error *err) {
    gguf_file *g;
    bs_status s = gguf_open(path, &g, err);
    if (s != BS_OK) return s;
    const char *source = NULL;
    if (name) {
        char key[256];
        snprintf(key, sizeof key, "tokenizer.chat_template.%s", name);
        s = gguf_get_str(g, key, 0, &source, err);
    }
    if (s == BS_OK && !source) s = gguf_get_str(g, "tokenizer.chat_template", 0, &source, err);
    if (s != BS_OK) {
        gguf_close(g);
        return s;
    }
    if (!source) {
        bs_log_debug("%s: no tokenizer.chat_template; using ChatML", path);
        source = CHATML;
    }
    char *bos = vocab_token(g, "tokenizer.ggml.bos_token_id"), *eos = vocab_token(g, "tokenizer.ggml.eos_token_id");
    if (!bos || !eos) s = bs_fail(err, BS_ENOMEM, "out of memory");
    else s = chat_template_open(source, bos, eos, out, err);
    if (s != BS_OK && bos && eos) bs_wrap(err, "%s", path);
    free(bos);
    free(eos);
    gguf_close(g);
    return s;
}

bs_status chat_template_from_model(const char *model_path, const char *name, chat_template **out, bs_error *err) {
    *out = NULL;
    if (!model_path) {
        bs_log_debug("model without files: using the ChatML chat template");
        return chat_template_open(CHATML, "", "", out, err);
    }
    if (bs_is_directory(model_path)) return open_hf(model_path, name, out, err);
    if (!bs_file_exists(model_path)) return bs_fail(err, BS_ENOTFOUND, "%s: no such model directory or .gguf file", model_path);
    return open_gguf(model_path, name, out, err);
}

/* ---- rendering ---------------------------------------------------------- */

bs_status chat_template_render(const chat_template *t, const json_t *messages, const json_t *tools,
                               int add_generation_prompt, const json_t *extra, char **out, size_t *len,
                               bs_error *err) {
    *out = NULL;
    if (len) *len = 0;
    if (!json_is_array(messages)) return bs_fail(err, BS_EINVAL, "chat template: messages must be a JSON array");
    if (tools && !json_is_array(tools) && !json_is_null(tools))
        return bs_fail(err, BS_EINVAL, "chat template: tools must be a JSON array");
    if (extra && !json_is_object(extra)) return bs_fail(err, BS_EINVAL, "chat template: extra variables must be a JSON object");
    json_t *vars = json_object();
    if (!vars) return bs_fail(err, BS_ENOMEM, "out of memory");
    json_object_set(vars, "messages", (json_t *)messages);
    json_object_set_new(vars, "tools", tools ? json_incref((json_t *)tools) : json_null());
    json_object_set_new(vars, "documents", json_null());
    json_object_set_new(vars, "add_generation_prompt", json_boolean(add_generation_prompt));
    json_object_set_new(vars, "bos_token", json_string(t->bos));
    json_object_set_new(vars, "eos_token", json_string(t->eos));
    if (extra) json_object_update(vars, (json_t *)extra);
    jinja_options opt = {.now = t->now};
    bs_status s = jinja_render(t->jinja, vars, &opt, out, len, err);
    json_decref(vars);
    return s;
}
