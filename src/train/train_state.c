/* train/train_state.c — checkpoints, adapters and export of a trainer's
 * state, shared by the SFT and RFT loops. */
#include "train/train_state.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/paths.h"
#include "format/safetensors_write.h"

#define STATE_FILE "trainer_state.bin"
#define STATE_MAGIC 0x54535342u /* "BSST" */
#define STATE_VERSION 2u

/* Followed by the meta block, the trained values and the moments. */
typedef struct state_header {
    uint32_t magic, version;
    uint64_t n_params, meta_size;
    int32_t trainer_steps, pad;
    uint64_t micro_batches;
} state_header;

static bs_status write_all(FILE *f, const void *p, size_t n, const char *path, bs_error *err) {
    if (n && fwrite(p, 1, n, f) != n) return bs_fail(err, BS_EIO, "%s: write failed: %s", path, strerror(errno));
    return BS_OK;
}

/* The trained values are one block in tensor order (trainer.h), so the
 * first tensor's data pointer starts it. */
static float *params_of(bs_trainer *t) { return trainer_tensor(t, 0)->data; }

static bs_status write_state(bs_trainer *t, const void *meta, size_t meta_size, const char *path, bs_error *err) {
    size_t n = trainer_n_params(t);
    state_header h = {.magic = STATE_MAGIC, .version = STATE_VERSION, .n_params = n, .meta_size = meta_size};
    trainer_counters(t, &h.trainer_steps, &h.micro_batches);
    FILE *f = fopen(path, "wb");
    if (!f) return bs_fail(err, BS_EIO, "%s: %s", path, strerror(errno));
    bs_status st = write_all(f, &h, sizeof h, path, err);
    if (st == BS_OK) st = write_all(f, meta, meta_size, path, err);
    if (st == BS_OK) st = write_all(f, params_of(t), n * sizeof(float), path, err);
    if (st == BS_OK) st = write_all(f, trainer_moments(t), 2 * n * sizeof(float), path, err);
    if (st == BS_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = bs_fail(err, BS_EIO, "%s: %s", path, strerror(errno));
    if (fclose(f) != 0 && st == BS_OK) st = bs_fail(err, BS_EIO, "%s: %s", path, strerror(errno));
    return st;
}

bs_status train_adapter(bs_trainer *t, bs_model *m, const char *base_name, bs_adapter **out, bs_error *err) {
    const bs_train_config *c = trainer_config(t);
    if (c->full) return bs_fail(err, BS_EINVAL, "full training has no LoRA adapter");
    int n = trainer_n_tensors(t);
    bs_adapter_tensor *ts = calloc((size_t)n, sizeof *ts);
    if (!ts) return bs_fail(err, BS_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const bs_train_tensor *x = trainer_tensor(t, i);
        ts[i] = (bs_adapter_tensor){.name = x->name, .data = x->data, .rows = x->rows, .cols = x->cols};
    }
    bs_adapter_config ac = {.rank = c->lora.rank, .alpha = c->lora.alpha, .rslora = c->lora.rslora,
                            .targets = c->lora.targets, .base_model = base_name};
    bs_status st = adapter_from_tensors(m, &ac, ts, n, out, err);
    free(ts);
    return st;
}

bs_status train_state_save(bs_trainer *t, bs_model *m, const void *meta, size_t meta_size, const char *dir,
                           bs_error *err) {
    size_t n = strlen(dir);
    char *tmp = malloc(n + 5), *state = NULL;
    if (!tmp) return bs_fail(err, BS_ENOMEM, "out of memory");
    snprintf(tmp, n + 5, "%s.tmp", dir);
    bs_remove_tree(tmp, NULL);
    bs_status st = bs_make_dirs(tmp, 0755, err);
    if (st == BS_OK && !(state = bs_path_join(tmp, STATE_FILE))) st = bs_fail(err, BS_ENOMEM, "out of memory");
    if (st == BS_OK) st = write_state(t, meta, meta_size, state, err);
    if (st == BS_OK && !trainer_config(t)->full) {
        bs_adapter *a = NULL;
        st = train_adapter(t, m, NULL, &a, err);
        if (st == BS_OK) st = adapter_save_peft(a, tmp, NULL, BS_DTYPE_F32, err);
        adapter_close(a);
    }
    if (st == BS_OK) {
        bs_remove_tree(dir, NULL);
        if (rename(tmp, dir) != 0) st = bs_fail(err, BS_EIO, "%s: %s", dir, strerror(errno));
    }
    if (st != BS_OK) bs_remove_tree(tmp, NULL);
    free(state);
    free(tmp);
    return st;
}

/* dir's state file into *data (malloc'ed), its header checked against
 * this version and meta_size; *path (malloc'ed) names it for messages. */
static bs_status read_state(const char *dir, size_t meta_size, char **data, size_t *size, state_header *h,
                            char **path, bs_error *err) {
    *data = NULL;
    if (!(*path = bs_path_join(dir, STATE_FILE))) return bs_fail(err, BS_ENOMEM, "out of memory");
    bs_status st = bs_file_read(*path, data, size, err);
    if (st == BS_OK && *size < sizeof *h)
        st = bs_fail(err, BS_EFORMAT, "%s: %zu bytes is too short for a basalt checkpoint", *path, *size);
    if (st == BS_OK) {
        memcpy(h, *data, sizeof *h);
        if (h->magic != STATE_MAGIC || h->version != STATE_VERSION)
            st = bs_fail(err, BS_EFORMAT, "%s: not a basalt checkpoint of this version (version %u)", *path,
                         h->version);
        else if (h->meta_size != meta_size || *size < sizeof *h + meta_size)
            st = bs_fail(err, BS_EFORMAT, "%s: made by a different run (another kind of training)", *path);
    }
    return st;
}

bs_status train_state_load(bs_trainer *t, const char *dir, void *meta, size_t meta_size, train_meta_check check,
                           void *user, bs_error *err) {
    char *path = NULL, *data = NULL;
    size_t size = 0, n = trainer_n_params(t), want = sizeof(state_header) + meta_size + 3 * n * sizeof(float);
    state_header h;
    bs_status st = read_state(dir, meta_size, &data, &size, &h, &path, err);
    if (st == BS_OK) {
        memcpy(meta, data + sizeof h, meta_size);
        st = check(user, meta, path, err);
    }
    if (st == BS_OK && (h.n_params != n || size != want))
        st = bs_fail(err, BS_EFORMAT, "%s: made by a different run (%llu trained values, this run has %zu)", path,
                     (unsigned long long)h.n_params, n);
    if (st == BS_OK) st = trainer_set_counters(t, h.trainer_steps, h.micro_batches, err);
    if (st == BS_OK) {
        const char *p = data + sizeof h + meta_size;
        memcpy(params_of(t), p, n * sizeof(float));
        memcpy(trainer_moments(t), p + n * sizeof(float), 2 * n * sizeof(float));
    }
    free(data);
    free(path);
    return st;
}

bs_status train_state_peek(const char *dir, void *meta, size_t meta_size, float *values, size_t n, bs_error *err) {
    char *path = NULL, *data = NULL;
    size_t size = 0;
    state_header h;
    bs_status st = read_state(dir, meta_size, &data, &size, &h, &path, err);
    if (st == BS_OK && values && (h.n_params != n || size != sizeof h + meta_size + 3 * n * sizeof(float)))
        st = bs_fail(err, BS_EFORMAT, "%s: made by a different run (%llu trained values, this run has %zu)", path,
                     (unsigned long long)h.n_params, n);
    if (st == BS_OK) {
        memcpy(meta, data + sizeof h, meta_size);
        if (values) memcpy(values, data + sizeof h + meta_size, n * sizeof(float));
    }
    free(data);
    free(path);
    return st;
}

bs_status train_state_checkpoint(bs_trainer *t, bs_model *m, const void *meta, size_t meta_size, const char *root,
                                 int step, char **dir, bs_error *err) {
    char name[32];
    snprintf(name, sizeof name, "checkpoint-%d", step);
    *dir = bs_path_join(root, name);
    if (!*dir) return bs_fail(err, BS_ENOMEM, "out of memory");
    bs_status st = bs_make_dirs(root, 0755, err);
    if (st == BS_OK) st = train_state_save(t, m, meta, meta_size, *dir, err);
    if (st != BS_OK) {
        free(*dir);
        *dir = NULL;
    }
    return st;
}

/* ---- data order ------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void train_epoch_order(uint64_t seed, int epoch, size_t *perm, size_t n) {
    uint64_t s = seed ^ (0xd1b54a32d192ed03ull * (uint64_t)(epoch + 1));
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix(&s) % i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

void train_step_slice(int step, int steps_per_epoch, int batch_size, size_t n_train, int *epoch, size_t *first,
                      size_t *n) {
    *epoch = step / steps_per_epoch;
    *first = (size_t)(step % steps_per_epoch) * (size_t)batch_size;
    *n = (size_t)batch_size;
    if (*first + *n > n_train) *n = n_train - *first;
}

void train_order_init(train_order *o, uint64_t seed, size_t n_train, int batch_size) {
    *o = (train_order){.seed = seed, .n_train = n_train, .batch_size = batch_size,
                       .steps_per_epoch = (int)((n_train + (size_t)batch_size - 1) / (size_t)batch_size),
                       .perm = malloc(n_train * sizeof *o->perm), .epoch = -1};
}

void train_order_free(train_order *o) {
    free(o->perm);
    o->perm = NULL;
}

const size_t *train_order_step(train_order *o, int step, int *epoch, size_t *n) {
    size_t first;
    train_step_slice(step, o->steps_per_epoch, o->batch_size, o->n_train, epoch, &first, n);
    if (o->epoch != *epoch) {
        train_epoch_order(o->seed, *epoch, o->perm, o->n_train);
        o->epoch = *epoch;
    }
    return o->perm + first;
}

/* ---- export ---------------------------------------------------------------- */

static bs_status fill_f32(void *ctx, const st_write_tensor *t, void *dst, bs_error *err) {
    (void)ctx;
    (void)err;
    const bs_train_tensor *x = t->user;
    memcpy(dst, x->data, (size_t)x->rows * (size_t)x->cols * sizeof(float));
    return BS_OK;
}

/* Full training: every parameter is trained, so the trainer's tensors (HF
 * names) are the whole model. */
static bs_status export_full(bs_trainer *t, const char *base_path, const char *out_dir, bs_error *err) {
    if (!base_path || !bs_is_directory(base_path))
        return bs_fail(err, BS_EUNSUPPORTED,
                       "%s: full fine-tuning writes a Hugging Face directory and needs one as the base (its config "
                       "and tokenizer files are copied)",
                       base_path ? base_path : "(no base path)");
    int n = trainer_n_tensors(t);
    st_write_tensor *ts = calloc((size_t)n, sizeof *ts);
    if (!ts) return bs_fail(err, BS_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const bs_train_tensor *x = trainer_tensor(t, i);
        ts[i] = (st_write_tensor){.name = x->name, .dtype = BS_DTYPE_F32, .ndim = x->cols == 1 ? 1 : 2,
                                  .user = (void *)x};
        ts[i].shape[0] = x->rows;
        ts[i].shape[1] = x->cols;
    }
    char *path = bs_path_join(out_dir, "model.safetensors");
    bs_status st = path ? st_write_file(path, ts, (size_t)n, fill_f32, NULL, err)
                        : bs_fail(err, BS_ENOMEM, "out of memory");
    free(path);
    free(ts);
    static const char *const copied[] = {"config.json", "generation_config.json", "tokenizer.json",
                                         "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"};
    for (size_t i = 0; st == BS_OK && i < sizeof copied / sizeof copied[0]; i++) {
        char *src = bs_path_join(base_path, copied[i]), *dst = bs_path_join(out_dir, copied[i]);
        if (!src || !dst) st = bs_fail(err, BS_ENOMEM, "out of memory");
        else if (bs_file_exists(src)) st = bs_file_copy(src, dst, err);
        free(src);
        free(dst);
    }
    return st;
}

bs_status train_export(bs_trainer *t, bs_model *m, const char *base_path, const char *base_name,
                       const char *out_dir, bs_error *err) {
    bs_status st = bs_make_dirs(out_dir, 0755, err);
    if (st != BS_OK) return st;
    if (trainer_config(t)->full) return export_full(t, base_path, out_dir, err);
    bs_adapter *a = NULL;
    st = train_adapter(t, m, base_name, &a, err);
    if (st == BS_OK) st = adapter_save_peft(a, out_dir, base_name, BS_DTYPE_F32, err);
    adapter_close(a);
    return st;
}
