/* server/handlers_files.c — the OpenAI Files API: upload (multipart, streamed
 * to disk), list, retrieve, content, delete.
 *
 * An upload never sits in memory: http.c hands the multipart body over in
 * pieces as it arrives (http_stream_form), and each piece of the `file`
 * field goes straight to DATA/files/<id>.upload while its size, SHA-256 and
 * UTF-8 validity are tracked.  When the body is complete the handler checks
 * the whole upload, renames the file to DATA/files/<id> and records it in
 * the store; any failure (bad field, too large, client gone) removes the
 * partial file, so nothing half-written is ever listed.
 *
 * Fine-tuning data is validated line by line when a job is created (as
 * OpenAI does, train/dataset.h); at upload, JSONL purposes only have to be
 * non-empty UTF-8 text. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/log.h"
#include "hub/sha256.h"
#include "server/openai_response.h"
#include "server/server_impl.h"
#include "store/store.h"

/* Purposes a client may upload with (OpenAI's CreateFileRequest). */
static const char *const upload_purposes[] = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"};

/* Purposes whose files are JSONL, so they must be UTF-8 text. */
static int text_purpose(const char *p) {
    return strcmp(p, "fine-tune") == 0 || strcmp(p, "batch") == 0 || strcmp(p, "evals") == 0;
}

/* ------------------------------------------------------------ UTF-8 */

/* An incremental UTF-8 check (RFC 3629: no overlongs, surrogates or code
 * points past U+10FFFF) that survives pieces ending mid-character. */
typedef struct utf8_check {
    int need;                  /* continuation bytes still expected */
    unsigned char lo, hi;      /* allowed range of the next continuation byte */
    int bad;
} utf8_check;

static void utf8_feed(utf8_check *u, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n && !u->bad; i++) {
        unsigned char c = p[i];
        if (u->need) {
            if (c < u->lo || c > u->hi) u->bad = 1;
            u->lo = 0x80, u->hi = 0xbf, u->need--;
        } else if (c < 0x80) {
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            u->need = 1, u->lo = 0x80, u->hi = 0xbf;
        } else if (c >= 0xe0 && c <= 0xef) {
            u->need = 2, u->lo = c == 0xe0 ? 0xa0 : 0x80, u->hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            u->need = 3, u->lo = c == 0xf0 ? 0x90 : 0x80, u->hi = c == 0xf4 ? 0x8f : 0xbf;
        } else {
            u->bad = 1;
        }
    }
}

/* ------------------------------------------------------------ upload */

typedef struct upload {
    basalt_server *s;
    char *owner; /* the uploading tenant (request_tenant) */
    api_error a; /* the first problem; failed says whether there is one */
    int failed;
    char id[48];
    char *tmp_path, *final_path;
    int fd;
    char *filename;
    int has_file;
    int64_t bytes;
    sha256_ctx sha;
    utf8_check utf8;
    char purpose[32];
    size_t purpose_len;
    int has_purpose;
    int committed; /* the bytes are at final_path and in the store */
} upload;

/* Record the first failure; returns 1 so piece can stop the body. */
static int upload_fail(upload *u, int http, bs_status st, const char *param, const char *fmt, const char *arg) {
    if (u->failed) return 1;
    u->failed = 1;
    u->a.http = http;
    api_fail(&u->a, st, param, NULL, fmt, arg);
    return 1;
}

static int file_start(upload *u, const char *filename) {
    u->has_file = 1;
    if (!filename || !*filename)
        return upload_fail(u, 400, BS_EINVAL, "file", "%s: the file part carries no filename", "file");
    u->filename = strdup(filename);
    random_id("file-", u->id, sizeof u->id);
    char name[64];
    snprintf(name, sizeof name, "%s.upload", u->id);
    u->tmp_path = bs_path_join(store_files_dir(u->s->store), name);
    u->final_path = bs_path_join(store_files_dir(u->s->store), u->id);
    if (!u->filename || !u->tmp_path || !u->final_path)
        return upload_fail(u, 503, BS_ENOMEM, NULL, "%s", "out of memory");
    sha256_init(&u->sha);
    u->fd = open(u->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (u->fd < 0) {
        bs_log_error("files: cannot create %s: %s", u->tmp_path, strerror(errno));
        return upload_fail(u, 500, BS_EIO, NULL, "cannot store the upload: %s", strerror(errno));
    }
    return 0;
}

static int file_piece(upload *u, const char *filename, const char *data, size_t len, uint64_t off) {
    if (!u->has_file) {
        if (file_start(u, filename)) return 1;
    } else if (off == 0 && u->bytes > 0) {
        return upload_fail(u, 400, BS_EINVAL, "file", "%s: send one file per upload", "file");
    }
    if ((uint64_t)u->bytes + len > (uint64_t)u->s->max_file) {
        char limit[48];
        snprintf(limit, sizeof limit, "%zu MiB", u->s->max_file >> 20);
        return upload_fail(u, 413, BS_EINVAL, "file", "file: larger than the server's limit of %s (--max-file-mb)",
                           limit);
    }
    for (size_t done = 0; done < len;) {
        ssize_t n = write(u->fd, data + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            bs_log_error("files: writing %s: %s", u->tmp_path, strerror(errno));
            return upload_fail(u, 500, BS_EIO, NULL, "cannot store the upload: %s", strerror(errno));
        }
        done += (size_t)n;
    }
    sha256_update(&u->sha, data, len);
    utf8_feed(&u->utf8, (const unsigned char *)data, len);
    u->bytes += (int64_t)len;
    return 0;
}

/* http_form_piece: one piece of one form field. */
static int upload_piece(void *ctx, const char *name, const char *filename, const char *data, size_t len,
                        uint64_t off) {
    upload *u = ctx;
    if (u->failed) return 1;
    if (strcmp(name, "file") == 0) return file_piece(u, filename, data, len, off);
    if (strcmp(name, "purpose") == 0) {
        if (off == 0 && u->has_purpose && u->purpose_len)
            return upload_fail(u, 400, BS_EINVAL, "purpose", "%s: given more than once", "purpose");
        u->has_purpose = 1;
        if (u->purpose_len + len >= sizeof u->purpose)
            return upload_fail(u, 400, BS_EINVAL, "purpose", "%s: not a known purpose", "purpose");
        memcpy(u->purpose + u->purpose_len, data, len);
        u->purpose_len += len;
        return 0;
    }
    if (strncmp(name, "expires_after", 13) == 0)
        return upload_fail(u, 400, BS_EUNSUPPORTED, "expires_after",
                           "%s: not supported; basalt keeps files until they are deleted", "expires_after");
    return upload_fail(u, 400, BS_EINVAL, name, "unknown form field \"%s\" (expected file and purpose)", name);
}

static void upload_release(void *ctx) {
    upload *u = ctx;
    if (u->fd >= 0) close(u->fd);
    if (u->tmp_path && !u->committed) unlink(u->tmp_path);
    free(u->tmp_path);
    free(u->final_path);
    free(u->filename);
    free(u->owner);
    free(u);
}

void begin_file_upload(basalt_server *s, http_request *r) {
    upload *u = calloc(1, sizeof *u);
    if (!u) return; /* the handler answers 503 for a request without a form */
    u->s = s;
    u->fd = -1;
    /* NULL makes the handler answer 503 like a missing form. */
    if (!(u->owner = strdup(request_tenant(r)))) {
        free(u);
        return;
    }
    http_stream_form(r, upload_piece, upload_release, u);
}

/* ------------------------------------------------------------ file objects */

static json_t *file_object(const store_file *f) {
    return json_pack("{s:s,s:s,s:I,s:I,s:n,s:s,s:s,s:s,s:n}", "id", f->id, "object", "file", "bytes",
                     (json_int_t)f->bytes, "created_at", (json_int_t)f->created_at, "expires_at", "filename",
                     f->filename, "purpose", f->purpose, "status", store_file_status_name(f->status),
                     "status_details");
}

/* The checks that need the whole upload, in the order a client fixes them. */
static bs_status upload_check(const upload *u, api_error *a) {
    if (!u->has_purpose)
        return api_fail(a, BS_EINVAL, "purpose", NULL,
                        "purpose: missing (one of assistants, batch, fine-tune, vision, user_data, evals)");
    int known = 0;
    for (size_t i = 0; i < sizeof upload_purposes / sizeof upload_purposes[0]; i++)
        known |= strcmp(u->purpose, upload_purposes[i]) == 0;
    if (!known)
        return api_fail(a, BS_EINVAL, "purpose", NULL,
                        "purpose: \"%s\" is not one of assistants, batch, fine-tune, vision, user_data, evals",
                        u->purpose);
    if (!u->has_file) return api_fail(a, BS_EINVAL, "file", NULL, "file: missing");
    if (u->bytes == 0) return api_fail(a, BS_EINVAL, "file", NULL, "file: %s is empty", u->filename);
    if (text_purpose(u->purpose) && (u->utf8.bad || u->utf8.need))
        return api_fail(a, BS_EFORMAT, "file", NULL, "file: %s is not UTF-8 text (purpose %s takes JSONL)",
                        u->filename, u->purpose);
    size_t n = strlen(u->filename);
    if (strcmp(u->purpose, "fine-tune") == 0 && (n < 6 || strcmp(u->filename + n - 6, ".jsonl") != 0))
        return api_fail(a, BS_EINVAL, "file", NULL, "file: %s: fine-tuning files must be .jsonl", u->filename);
    return BS_OK;
}

/* Make the upload durable under its final name, then record it. */
static bs_status upload_commit(upload *u, store_file *f, bs_error *err) {
    if (fsync(u->fd) != 0 || close(u->fd) != 0) {
        u->fd = -1;
        return bs_fail(err, BS_EIO, "%s: %s", u->tmp_path, strerror(errno));
    }
    u->fd = -1;
    if (rename(u->tmp_path, u->final_path) != 0) return bs_fail(err, BS_EIO, "%s: %s", u->final_path, strerror(errno));
    char hex[SHA256_HEX_LEN + 1];
    sha256_final_hex(&u->sha, hex);
    *f = (store_file){.id = u->id, .owner = u->owner, .filename = u->filename, .purpose = u->purpose, .bytes = u->bytes,
                      .created_at = unix_now(), .sha256 = hex, .path = u->final_path, .status = STORE_FILE_PROCESSED};
    if (store_file_insert(u->s->store, f, err) != BS_OK) {
        unlink(u->final_path);
        return err->status;
    }
    u->committed = 1;
    return BS_OK;
}

void handle_file_upload(basalt_server *s, http_request *r) {
    (void)s;
    upload *u;
    api_error a = {0};
    switch (http_form(r, (void **)&u)) {
    case HTTP_FORM_NONE:
        api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
        break;
    case HTTP_FORM_NOT_FORM:
        api_fail(&a, BS_EINVAL, NULL, NULL, "expected a multipart/form-data body with fields file and purpose");
        break;
    case HTTP_FORM_MALFORMED:
        api_fail(&a, BS_EINVAL, NULL, NULL, "the multipart/form-data body is malformed (bad boundary or cut short)");
        break;
    case HTTP_FORM_OK:
        if (u->failed) {
            respond_error(r, &u->a);
            return;
        }
        if (upload_check(u, &a) != BS_OK) break;
        store_file f;
        if (upload_commit(u, &f, &a.e) != BS_OK) {
            bs_log_error("files: %s", a.e.msg);
            break;
        }
        respond_json(r, 200, file_object(&f));
        return;
    }
    respond_error(r, &a);
}

/* ------------------------------------------------------------ list, get, content, delete */

void handle_files_list(basalt_server *s, http_request *r) {
    api_error a = {0};
    long limit = 10000;
    const char *order = http_query(r, "order");
    if (query_int(r, "limit", 1, 10000, &limit, &a) != BS_OK ||
        (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0 &&
         api_fail(&a, BS_EINVAL, "order", NULL, "order: expected asc or desc, got \"%s\"", order) != BS_OK)) {
        respond_error(r, &a);
        return;
    }
    store_page page = {.limit = (int)limit, .after = http_query(r, "after"), .ascending = order && !strcmp(order, "asc"),
                       .owner = request_tenant(r)};
    store_file *items;
    size_t n;
    int more;
    bs_error err = {0};
    if (store_file_list(s->store, http_query(r, "purpose"), &page, &items, &n, &more, &err) != BS_OK) {
        /* An unknown cursor is a bad parameter, not a missing resource. */
        if (err.status == BS_ENOTFOUND) err.status = BS_EINVAL;
        respond_store_error(r, &err, "after");
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, file_object(&items[i]));
    respond_json(r, 200,
                 json_pack("{s:s,s:o,s:s?,s:s?,s:b}", "object", "list", "data", data, "first_id",
                           n ? items[0].id : NULL, "last_id", n ? items[n - 1].id : NULL, "has_more", more));
    store_files_free(items, n);
}

/* "/v1/files/ID" or "/v1/files/ID/content": the id, and whether content. */
static int split_file_path(const char *path, char *id, size_t cap, int *content) {
    const char *rest = path + strlen("/v1/files/"), *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    *content = slash && strcmp(slash, "/content") == 0;
    if (n == 0 || n >= cap || (slash && !*content)) return 0;
    memcpy(id, rest, n);
    id[n] = '\0';
    return 1;
}

/* The record for the path's id; 0 after answering 404 — also for another
 * tenant's file, with the same message, so ids cannot be probed. */
static int lookup(basalt_server *s, http_request *r, store_file *f, int *content, int allow_content) {
    char id[128];
    if (!split_file_path(http_path(r), id, sizeof id, content) || (*content && !allow_content)) {
        api_error a = {.http = 404};
        api_fail(&a, BS_ENOTFOUND, NULL, "not_found", "Unknown route: %s %s", http_method(r), http_path(r));
        respond_error(r, &a);
        return 0;
    }
    bs_error err = {0};
    bs_status st = store_file_get(s->store, id, f, &err);
    if (st == BS_OK && strcmp(f->owner ? f->owner : "", request_tenant(r)) != 0) {
        store_file_clear(f);
        st = BS_ENOTFOUND;
        err.status = BS_ENOTFOUND;
    }
    if (st != BS_OK) {
        if (err.status == BS_ENOTFOUND) bs_fail(&err, BS_ENOTFOUND, "No such File object: %s", id);
        respond_store_error(r, &err, "id");
        return 0;
    }
    return 1;
}

typedef struct content_stream {
    int fd;
} content_stream;

static int content_pull(void *ctx, srv_buf *out) {
    content_stream *c = ctx;
    char chunk[64 * 1024];
    ssize_t n;
    do n = read(c->fd, chunk, sizeof chunk);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    buf_append(out, chunk, (size_t)n);
    return n > 0;
}

static void content_done(void *ctx) {
    content_stream *c = ctx;
    close(c->fd);
    free(c);
}

void handle_file_get(basalt_server *s, http_request *r) {
    store_file f;
    int content;
    if (!lookup(s, r, &f, &content, 1)) return;
    if (!content) {
        respond_json(r, 200, file_object(&f));
        store_file_clear(&f);
        return;
    }
    /* Streamed from disk: a 512 MiB file costs 64 KiB of memory. */
    content_stream *c = malloc(sizeof *c);
    api_error a = {0};
    if (!c) {
        api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
    } else if ((c->fd = open(f.path, O_RDONLY | O_CLOEXEC)) < 0) {
        bs_log_error("files: %s (%s): %s", f.id, f.path, strerror(errno));
        api_fail(&a, BS_EIO, NULL, NULL, "the bytes of %s cannot be read", f.id);
        free(c);
    } else {
        http_respond_stream(r, 200, "application/octet-stream", content_pull, content_done, c);
    }
    if (a.e.status != BS_OK) respond_error(r, &a);
    store_file_clear(&f);
}

void handle_file_delete(basalt_server *s, http_request *r) {
    store_file f;
    int content;
    if (!lookup(s, r, &f, &content, 0)) return;
    /* The row goes first: a failed unlink then leaves an orphan blob, never
     * a listed file without bytes. */
    bs_error err = {0};
    if (store_file_delete(s->store, f.id, &err) != BS_OK) {
        respond_store_error(r, &err, "id");
    } else {
        if (unlink(f.path) != 0) bs_log_warn("files: %s: cannot remove %s: %s", f.id, f.path, strerror(errno));
        respond_json(r, 200, json_pack("{s:s,s:s,s:b}", "id", f.id, "object", "file", "deleted", 1));
    }
    store_file_clear(&f);
}
