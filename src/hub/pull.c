#include "hub/pull.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/paths.h"
#include "hub/sha256.h"

#define DEFAULT_ENDPOINT "https://huggingface.co"
/* Consecutive attempts without progress before giving up; backoff doubles
 * from BACKOFF_MS, so the worst case waits about 7.5 s in all. */
#define MAX_ATTEMPTS 5
#define BACKOFF_MS 500
#define API_MAX_BYTES (64u << 20) /* a file list of a huge repo is a few MB */
#define ERROR_BODY_MAX 4096       /* kept only to stop reading an error page */

typedef struct hub_file {
    char *path; /* rfilename, validated by hub_path_is_safe */
    uint64_t size;
    char key[SHA256_HEX_LEN + 1]; /* blob name: the LFS sha256, else the git blob id */
    int lfs;                      /* key is a sha256 to verify the bytes against */
    int in_snapshot;              /* already linked from an earlier pull */
} hub_file;

typedef struct client {
    CURL *curl;
    struct curl_slist *headers;
    char *endpoint; /* without a trailing '/' */
    int has_token;
    char errbuf[CURL_ERROR_SIZE];
    hub_progress_fn progress;
    void *progress_ctx;
} client;

/* A download in progress: the .incomplete file and the hash of its bytes. */
typedef struct download {
    int fd;
    const hub_file *file;
    uint64_t offset;   /* bytes on disk */
    uint64_t received; /* bytes this pull got over the network */
    sha256_ctx sha;
    int io_errno;  /* a failed write, reported after curl returns */
    int overflow;  /* the server sent more than the file list declared */
    int bad_range; /* a 206 that does not start where we asked */
} download;

/* One HTTP exchange.  Headers of redirect responses are dropped as the next
 * status line arrives, so what remains belongs to the final response. */
typedef struct response {
    client *c;
    long code;
    int started;
    char content_range[96];
    char error_code[64];
    char error_message[256];
    char *body; /* the API's JSON, or the start of an error page */
    size_t body_len, body_cap, body_max;
    download *dl; /* where a 200/206 body goes; NULL: into body */
} response;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_status;

static void curl_init_once(void) { curl_init_status = curl_global_init(CURL_GLOBAL_DEFAULT); }

int hub_wants_file(const char *rfilename) {
    static const char *const names[] = {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "special_tokens_map.json",
        "model.safetensors.index.json",
    };
    if (strchr(rfilename, '/')) return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(rfilename, names[i]) == 0) return 1;
    size_t n = strlen(rfilename);
    return n > 12 && strcmp(rfilename + n - 12, ".safetensors") == 0;
}

static int has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static bs_status make_parent_dirs(const char *path, bs_error *err) {
    char *dir = strdup(path);
    if (!dir) return bs_fail(err, BS_ENOMEM, "out of memory");
    *strrchr(dir, '/') = '\0';
    bs_status s = bs_make_dirs(dir, 0755, err);
    free(dir);
    return s;
}

/* ---- HTTP ---- */

static void copy_header_value(char *dst, size_t cap, const char *v, size_t n) {
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) n--;
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
    response *r = ud;
    size_t n = size * nmemb;
    static const struct {
        const char *name;
        size_t off, cap;
    } kept[] = {
        {"content-range:", offsetof(response, content_range), sizeof((response *)0)->content_range},
        {"x-error-code:", offsetof(response, error_code), sizeof((response *)0)->error_code},
        {"x-error-message:", offsetof(response, error_message), sizeof((response *)0)->error_message},
    };
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        r->content_range[0] = r->error_code[0] = r->error_message[0] = '\0';
        return n;
    }
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        size_t k = strlen(kept[i].name);
        if (n > k && strncasecmp(p, kept[i].name, k) == 0)
            copy_header_value((char *)r + kept[i].off, kept[i].cap, p + k, n - k);
    }
    return n;
}

/* An oversized API answer aborts the transfer; an error page is cut short. */
static size_t keep_body(response *r, const char *p, size_t n) {
    if (r->body_len + n > r->body_max) return r->code == 200 ? 0 : n;
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 16384;
        while (cap < r->body_len + n + 1) cap *= 2;
        char *grown = realloc(r->body, cap);
        if (!grown) return 0;
        r->body = grown;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

static void download_restart(download *dl) {
    dl->offset = 0;
    if (ftruncate(dl->fd, 0) != 0) dl->io_errno = errno;
    sha256_init(&dl->sha);
}

/* First bytes of a 200/206 body: make sure they continue what is on disk. */
static int download_check_start(download *dl, const response *r) {
    if (r->code == 200 && dl->offset > 0) {
        bs_log_info("%s: the server ignored the Range request; downloading again from the start", dl->file->path);
        download_restart(dl);
    } else if (r->code == 206) {
        unsigned long long start;
        if (sscanf(r->content_range, "bytes %llu-", &start) != 1 || start != dl->offset) {
            dl->bad_range = 1;
            return 0;
        }
    }
    return dl->io_errno == 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
    response *r = ud;
    size_t n = size * nmemb;
    if (!r->started) {
        r->started = 1;
        curl_easy_getinfo(r->c->curl, CURLINFO_RESPONSE_CODE, &r->code);
        if (r->dl && (r->code == 200 || r->code == 206) && !download_check_start(r->dl, r)) return 0;
    }
    download *dl = r->dl;
    if (!dl || (r->code != 200 && r->code != 206)) return keep_body(r, p, n);
    if (dl->offset + n > dl->file->size) {
        dl->overflow = 1;
        return 0;
    }
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(dl->fd, p + done, n - done, (off_t)(dl->offset + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            dl->io_errno = w < 0 ? errno : EIO;
            return 0;
        }
        done += (size_t)w;
    }
    if (dl->file->lfs) sha256_update(&dl->sha, p, n);
    dl->offset += n;
    dl->received += n;
    return n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    response *r = ud;
    if (r->dl && r->c->progress)
        r->c->progress(r->c->progress_ctx, r->dl->file->path, r->dl->offset, r->dl->file->size);
    return 0;
}

static bs_status client_open(client *c, const hub_pull_opts *opts, bs_error *err) {
    memset(c, 0, sizeof *c);
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_status != CURLE_OK)
        return bs_fail(err, BS_EIO, "libcurl init failed: %s", curl_easy_strerror(curl_init_status));
    const char *endpoint = opts->endpoint ? opts->endpoint : getenv("HF_ENDPOINT");
    if (!endpoint || !*endpoint) endpoint = DEFAULT_ENDPOINT;
    const char *token = opts->token ? opts->token : getenv("HF_TOKEN");
    c->endpoint = strdup(endpoint);
    c->curl = curl_easy_init();
    if (!c->endpoint || !c->curl) return bs_fail(err, BS_ENOMEM, "out of memory");
    size_t n = strlen(c->endpoint);
    while (n > 0 && c->endpoint[n - 1] == '/') c->endpoint[--n] = '\0';
    if (token && *token) {
        char *h;
        if (asprintf(&h, "Authorization: Bearer %s", token) < 0) return bs_fail(err, BS_ENOMEM, "out of memory");
        c->headers = curl_slist_append(NULL, h);
        free(h);
        if (!c->headers) return bs_fail(err, BS_ENOMEM, "out of memory");
        c->has_token = 1;
    }
    c->progress = opts->progress;
    c->progress_ctx = opts->progress_ctx;
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "basalt/0.1");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    /* LFS files redirect to a CDN.  curl sends a custom Authorization header
     * only to the host it was given, never after a redirect elsewhere; this
     * says so explicitly, as huggingface_hub drops it too. */
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    /* No overall timeout (big files take long): a stalled transfer, under
     * 1 KB/s for 30 s, fails and is retried from where it stopped. */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    return BS_OK;
}

static void client_close(client *c) {
    if (c->curl) curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    free(c->endpoint);
    memset(c, 0, sizeof *c);
}

static int retryable_curl(CURLcode cc) {
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR: return 1;
    default: return 0;
    }
}

static int retryable_http(long code) { return code == 408 || code == 429 || code >= 500; }

/* The one-line error for a final HTTP status; `what` names the repo (and
 * file).  Without a token the hub answers 401 for private and missing repos
 * alike, so that message covers both. */
static bs_status http_fail(const client *c, const char *what, const char *url, const response *r, bs_error *err) {
    char detail[sizeof r->error_message + 8] = "";
    if (r->error_message[0]) snprintf(detail, sizeof detail, " (%s)", r->error_message);
    if ((r->code == 401 || r->code == 403) && !c->has_token)
        return bs_fail(err, BS_EINVAL, "%s: gated or private (or missing): HTTP %ld from %s%s: set HF_TOKEN", what,
                       r->code, url, detail);
    if (r->code == 401 || r->code == 403)
        return bs_fail(err, BS_EINVAL,
                       "%s: HF_TOKEN was refused: HTTP %ld from %s%s: check that the token may read this repo "
                       "(gated models need their terms accepted on the hub)",
                       what, r->code, url, detail);
    if (r->code == 404) {
        const char *kind = strcmp(r->error_code, "RevisionNotFound") == 0 ? "revision not found"
                           : strcmp(r->error_code, "EntryNotFound") == 0  ? "file not found"
                                                                          : "not found";
        return bs_fail(err, BS_ENOTFOUND, "%s: %s: HTTP 404 from %s%s", what, kind, url, detail);
    }
    return bs_fail(err, BS_EIO, "%s: HTTP %ld from %s%s", what, r->code, url, detail);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* GET url into r (and r->dl when set), retrying transient failures; a
 * download resumes with a Range request from the bytes already on disk. */
static bs_status fetch(client *c, const char *what, const char *url, response *r, bs_error *err) {
    download *dl = r->dl;
    for (int attempt = 1;; attempt++) {
        uint64_t before = dl ? dl->offset : 0;
        char range[32];
        snprintf(range, sizeof range, "%llu-", (unsigned long long)before);
        r->c = c;
        r->code = 0;
        r->started = 0;
        r->body_len = 0;
        r->content_range[0] = r->error_code[0] = r->error_message[0] = '\0';
        c->errbuf[0] = '\0';
        curl_easy_setopt(c->curl, CURLOPT_URL, url);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, r);
        curl_easy_setopt(c->curl, CURLOPT_RANGE, before > 0 ? range : NULL);
        CURLcode cc = curl_easy_perform(c->curl);
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->code);
        if (dl && dl->io_errno)
            return bs_fail(err, BS_EIO, "%s: cannot write the download: %s", what, strerror(dl->io_errno));
        if (dl && dl->overflow)
            return bs_fail(err, BS_EFORMAT, "%s: %s sent more than the %llu bytes the file list declares", what, url,
                           (unsigned long long)dl->file->size);
        if (cc == CURLE_WRITE_ERROR && !dl)
            return bs_fail(err, BS_EFORMAT, "%s: response from %s is larger than %zu bytes", what, url, r->body_max);
        int ok = cc == CURLE_OK && (r->code == 200 || r->code == 206);
        int retry;
        char why[CURL_ERROR_SIZE + 64];
        if (dl && (dl->bad_range || r->code == 416)) {
            /* The server cannot continue our partial file: start over. */
            snprintf(why, sizeof why, "HTTP %ld with a range that does not match", r->code);
            dl->bad_range = 0;
            download_restart(dl);
            retry = 1;
        } else if (ok && dl && dl->offset < dl->file->size) {
            snprintf(why, sizeof why, "the body ended after %llu of %llu bytes", (unsigned long long)dl->offset,
                     (unsigned long long)dl->file->size);
            retry = 1;
        } else if (ok) {
            return BS_OK;
        } else if (cc != CURLE_OK) {
            snprintf(why, sizeof why, "%s%s%s", curl_easy_strerror(cc), c->errbuf[0] ? ": " : "", c->errbuf);
            retry = retryable_curl(cc);
        } else {
            snprintf(why, sizeof why, "HTTP %ld", r->code);
            retry = retryable_http(r->code);
            if (!retry) return http_fail(c, what, url, r, err);
        }
        if (dl && dl->offset > before) attempt = 1; /* progress: the failure budget starts again */
        if (!retry || attempt >= MAX_ATTEMPTS)
            return bs_fail(err, BS_EIO, "%s: %s from %s%s", what, why, url,
                           retry ? " (giving up after repeated attempts)" : "");
        long wait = (long)BACKOFF_MS << (attempt - 1);
        bs_log_warn("%s: %s; retrying in %.1f s", what, why, (double)wait / 1000);
        sleep_ms(wait);
    }
}

/* ---- the file list ---- */

static void free_files(hub_file *files, size_t n) {
    for (size_t i = 0; i < n; i++) free(files[i].path);
    free(files);
}

/* What a whole-repo pull of a GGUF-only repo should say: which files exist. */
static void list_gguf(json_t *siblings, char *out, size_t cap) {
    size_t i, used = 0;
    json_t *sib;
    out[0] = '\0';
    json_array_foreach(siblings, i, sib) {
        const char *name = json_string_value(json_object_get(sib, "rfilename"));
        if (!name || !has_suffix(name, ".gguf")) continue;
        int w = snprintf(out + used, cap - used, "%s%s", used ? ", " : "", name);
        if (w < 0 || (size_t)w >= cap - used) break;
        used += (size_t)w;
    }
}

static bs_status describe_file(const char *what, json_t *sib, const char *name, hub_file *f, bs_error *err) {
    json_t *lfs = json_object_get(sib, "lfs");
    json_t *size = json_object_get(sib, "size");
    if (!json_is_integer(size) && json_is_object(lfs)) size = json_object_get(lfs, "size");
    const char *sha = json_string_value(json_object_get(lfs, "sha256"));
    const char *blob = json_string_value(json_object_get(sib, "blobId"));
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return bs_fail(err, BS_EFORMAT, "%s: the hub's file list gives no size for %s", what, name);
    if (json_is_object(lfs) && !(sha && is_hex(sha, SHA256_HEX_LEN)))
        return bs_fail(err, BS_EFORMAT, "%s: the hub's file list gives no valid lfs.sha256 for %s", what, name);
    if (!json_is_object(lfs) && !(blob && is_hex(blob, HUB_COMMIT_LEN)))
        return bs_fail(err, BS_EFORMAT, "%s: the hub's file list gives no valid blobId for %s", what, name);
    f->path = strdup(name);
    if (!f->path) return bs_fail(err, BS_ENOMEM, "out of memory");
    f->size = (uint64_t)json_integer_value(size);
    f->lfs = json_is_object(lfs);
    strcpy(f->key, f->lfs ? sha : blob);
    return BS_OK;
}

/* Parse the revision's JSON: its commit and the files this pull takes.
 * Every name is checked before any is used, so a hub that lists "../x"
 * gets nothing written. */
static bs_status parse_listing(const char *what, const hub_spec *spec, const char *json,
                               char commit[HUB_COMMIT_LEN + 1], hub_file **files_out, size_t *n_out, bs_error *err) {
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    if (!root)
        return bs_fail(err, BS_EFORMAT, "%s: the hub's file list is not JSON: line %d: %s", what, jerr.line, jerr.text);
    bs_status s = BS_OK;
    const char *sha = json_string_value(json_object_get(root, "sha"));
    json_t *siblings = json_object_get(root, "siblings");
    hub_file *files = NULL;
    size_t n = 0, i;
    json_t *sib;
    int safetensors = 0;
    if (!sha || !hub_is_commit(sha) || !json_is_array(siblings)) {
        s = bs_fail(err, BS_EFORMAT, "%s: the hub's answer lacks a commit \"sha\" or \"siblings\"", what);
        goto done;
    }
    strcpy(commit, sha);
    json_array_foreach(siblings, i, sib) {
        const char *name = json_string_value(json_object_get(sib, "rfilename"));
        if (!name || !hub_path_is_safe(name)) {
            s = bs_fail(err, BS_EFORMAT, "%s: refusing the hub's file list: unsafe file name \"%s\"", what,
                        name ? name : "(missing)");
            goto done;
        }
    }
    files = calloc(json_array_size(siblings) + 1, sizeof *files);
    if (!files) {
        s = bs_fail(err, BS_ENOMEM, "out of memory");
        goto done;
    }
    json_array_foreach(siblings, i, sib) {
        const char *name = json_string_value(json_object_get(sib, "rfilename"));
        if (spec->file[0] ? strcmp(name, spec->file) != 0 : !hub_wants_file(name)) continue;
        if ((s = describe_file(what, sib, name, &files[n], err)) != BS_OK) goto done;
        n++;
        safetensors += has_suffix(name, ".safetensors");
    }
    char ggufs[300];
    list_gguf(siblings, ggufs, sizeof ggufs);
    if (spec->file[0] && n == 0)
        s = bs_fail(err, BS_ENOTFOUND, "%s: no file %s in the repo at commit %.12s%s%s%s", what, spec->file, commit,
                    ggufs[0] ? " (GGUF files: " : "", ggufs, ggufs[0] ? ")" : "");
    else if (!spec->file[0] && !safetensors && ggufs[0])
        s = bs_fail(err, BS_EUNSUPPORTED, "%s: no safetensors weights; pull one GGUF file as %s:FILE (GGUF files: %s)",
                    what, spec->repo, ggufs);
    else if (n == 0)
        s = bs_fail(err, BS_ENOTFOUND, "%s: no model files (config.json, tokenizer.json, *.safetensors) in the repo",
                    what);
done:
    json_decref(root);
    if (s != BS_OK) {
        free_files(files, n);
        return s;
    }
    *files_out = files;
    *n_out = n;
    return BS_OK;
}

static bs_status list_files(client *c, const hub_spec *spec, const char *what, char commit[HUB_COMMIT_LEN + 1],
                            hub_file **files, size_t *n, bs_error *err) {
    char *rev = curl_easy_escape(c->curl, spec->revision, 0), *url = NULL;
    if (!rev || asprintf(&url, "%s/api/models/%s/revision/%s?blobs=true", c->endpoint, spec->repo, rev) < 0) {
        curl_free(rev);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    curl_free(rev);
    response r = {.body_max = API_MAX_BYTES};
    /* The file list is small, so it gets an overall deadline too. */
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 60L);
    bs_status s = fetch(c, what, url, &r, err);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 0L);
    if (s == BS_OK) s = parse_listing(what, spec, r.body ? r.body : "", commit, files, n, err);
    free(r.body);
    free(url);
    return s;
}

/* ---- files ---- */

/* {endpoint}/{repo}/resolve/{commit}/{path}, each path segment escaped. */
static char *resolve_url(client *c, const char *repo, const char *commit, const char *path) {
    size_t cap = strlen(c->endpoint) + strlen(repo) + 3 * strlen(path) + 80;
    char *url = malloc(cap);
    if (!url) return NULL;
    size_t len = (size_t)snprintf(url, cap, "%s/%s/resolve/%s", c->endpoint, repo, commit);
    for (const char *p = path; *p;) {
        size_t seg = strcspn(p, "/");
        char *e = curl_easy_escape(c->curl, p, (int)seg);
        if (!e) {
            free(url);
            return NULL;
        }
        len += (size_t)snprintf(url + len, cap - len, "/%s", e);
        curl_free(e);
        p += seg + (p[seg] == '/');
    }
    return url;
}

/* Hash what an earlier attempt left in the .incomplete file. */
static int hash_prefix(download *dl) {
    unsigned char buf[1 << 16];
    for (uint64_t at = 0; at < dl->offset;) {
        size_t want = dl->offset - at < sizeof buf ? (size_t)(dl->offset - at) : sizeof buf;
        ssize_t got = pread(dl->fd, buf, want, (off_t)at);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return got < 0 ? errno : EIO;
        sha256_update(&dl->sha, buf, (size_t)got);
        at += (size_t)got;
    }
    return 0;
}

/* Download f into blob (via blob.incomplete), verified, then renamed. */
static bs_status download_blob(client *c, const char *what, const char *url, const char *blob, const hub_file *f,
                               hub_pull_result *res, bs_error *err) {
    char *partial;
    if (asprintf(&partial, "%s.incomplete", blob) < 0) return bs_fail(err, BS_ENOMEM, "out of memory");
    download dl = {.file = f};
    sha256_init(&dl.sha);
    bs_status s = BS_OK;
    struct stat st;
    dl.fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (dl.fd < 0) {
        s = bs_fail(err, BS_EIO, "%s: cannot open: %s", partial, strerror(errno));
        goto out;
    }
    if (flock(dl.fd, LOCK_EX | LOCK_NB) != 0) {
        s = bs_fail(err, BS_EIO, "%s: another pull is downloading this file (%s is locked)", what, partial);
        goto out;
    }
    int e = fstat(dl.fd, &st) != 0 ? errno : 0;
    dl.offset = e ? 0 : (uint64_t)st.st_size;
    if (!e && dl.offset > f->size) download_restart(&dl);
    if (!e && f->lfs) e = hash_prefix(&dl);
    if (e || dl.io_errno) {
        s = bs_fail(err, BS_EIO, "%s: %s", partial, strerror(e ? e : dl.io_errno));
        goto out;
    }
    if (dl.offset > 0) bs_log_info("%s: resuming at byte %llu", what, (unsigned long long)dl.offset);
    if (c->progress) c->progress(c->progress_ctx, f->path, dl.offset, f->size);
    if (dl.offset < f->size || f->size == 0) {
        response r = {.body_max = ERROR_BODY_MAX, .dl = &dl};
        s = fetch(c, what, url, &r, err);
        free(r.body);
        if (s != BS_OK) goto out;
    }
    res->bytes_downloaded += dl.received;
    if (f->lfs) {
        char got[SHA256_HEX_LEN + 1];
        sha256_final_hex(&dl.sha, got);
        if (strcmp(got, f->key) != 0) {
            unlink(partial);
            s = bs_fail(err, BS_EFORMAT, "%s: sha256 mismatch: expected %s, got %s (download deleted)", what, f->key,
                        got);
            goto out;
        }
    }
    if (rename(partial, blob) != 0)
        s = bs_fail(err, BS_EIO, "%s: cannot rename to %s: %s", partial, blob, strerror(errno));
out:
    if (dl.fd >= 0) close(dl.fd);
    free(partial);
    return s;
}

/* snapshots/<commit>/<path> -> ../../blobs/<key> (one more ../ per directory
 * level of path), relative so the cache can move. */
static bs_status link_snapshot(const char *repo_dir, const char *commit, const hub_file *f, bs_error *err) {
    char *snap;
    if (asprintf(&snap, "%s/snapshots/%s/%s", repo_dir, commit, f->path) < 0)
        return bs_fail(err, BS_ENOMEM, "out of memory");
    size_t depth = 0;
    for (const char *p = f->path; *p; p++) depth += *p == '/';
    char *target = malloc(3 * depth + 16 + sizeof f->key);
    bs_status s = target ? make_parent_dirs(snap, err) : bs_fail(err, BS_ENOMEM, "out of memory");
    if (s != BS_OK) {
        free(target);
        free(snap);
        return s;
    }
    strcpy(target, "../../");
    for (size_t i = 0; i < depth; i++) strcat(target, "../");
    strcat(target, "blobs/");
    strcat(target, f->key);
    unlink(snap);
    if (symlink(target, snap) != 0) s = bs_fail(err, BS_EIO, "%s: cannot create symlink: %s", snap, strerror(errno));
    free(target);
    free(snap);
    return s;
}

static int has_size(const char *path, uint64_t size) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size;
}

/* Make sure f's blob is in the cache (downloading it if needed); the
 * snapshot link comes later, once every blob of the pull is there. */
static bs_status fetch_blob(client *c, const hub_spec *spec, const char *repo_dir, const char *commit, hub_file *f,
                            hub_pull_result *res, bs_error *err) {
    char *snap = NULL, *blob = NULL, *url = NULL, *what = NULL;
    bs_status s = BS_OK;
    if (asprintf(&snap, "%s/snapshots/%s/%s", repo_dir, commit, f->path) < 0) snap = NULL;
    if (asprintf(&blob, "%s/blobs/%s", repo_dir, f->key) < 0) blob = NULL;
    if (asprintf(&what, "%s@%.12s: %s", spec->repo, commit, f->path) < 0) what = NULL;
    url = resolve_url(c, spec->repo, commit, f->path);
    if (!snap || !blob || !what || !url) {
        s = bs_fail(err, BS_ENOMEM, "out of memory");
    } else if (has_size(snap, f->size)) {
        f->in_snapshot = 1;
        res->files_cached++;
    } else if (has_size(blob, f->size)) {
        res->files_cached++;
    } else {
        s = make_parent_dirs(blob, err);
        if (s == BS_OK) s = download_blob(c, what, url, blob, f, res, err);
        if (s == BS_OK) res->files_downloaded++;
    }
    free(snap);
    free(blob);
    free(url);
    free(what);
    return s;
}

/* refs/<revision> lets the revision resolve offline to what was pulled. */
static bs_status write_ref(const char *repo_dir, const char *revision, const char *commit, bs_error *err) {
    char *path;
    if (asprintf(&path, "%s/refs/%s", repo_dir, revision) < 0) return bs_fail(err, BS_ENOMEM, "out of memory");
    bs_status s = make_parent_dirs(path, err);
    FILE *fp = s == BS_OK ? fopen(path, "w") : NULL;
    if (s == BS_OK) {
        int failed = !fp || fputs(commit, fp) < 0;
        if (fp && fclose(fp) != 0) failed = 1;
        if (failed) s = bs_fail(err, BS_EIO, "%s: cannot write: %s", path, strerror(errno));
    }
    free(path);
    return s;
}

bs_status hub_pull(const hub_spec *spec, const hub_pull_opts *opts, hub_pull_result *out, bs_error *err) {
    memset(out, 0, sizeof *out);
    client c;
    char *cache = NULL, *repo_dir = NULL, *what = NULL;
    hub_file *files = NULL;
    size_t n = 0;
    bs_status s = client_open(&c, opts, err);
    if (s == BS_OK && !opts->cache_dir) s = hub_cache_dir(NULL, &cache, err);
    if (s == BS_OK) {
        repo_dir = hub_repo_dir(opts->cache_dir ? opts->cache_dir : cache, spec->repo);
        if (!repo_dir || asprintf(&what, "%s@%s", spec->repo, spec->revision) < 0) {
            what = NULL;
            s = bs_fail(err, BS_ENOMEM, "out of memory");
        }
    }
    if (s == BS_OK) s = list_files(&c, spec, what, out->commit, &files, &n, err);
    /* Blobs first, links after: a failed pull leaves no partial snapshot. */
    for (size_t i = 0; s == BS_OK && i < n; i++) s = fetch_blob(&c, spec, repo_dir, out->commit, &files[i], out, err);
    for (size_t i = 0; s == BS_OK && i < n; i++)
        if (!files[i].in_snapshot) s = link_snapshot(repo_dir, out->commit, &files[i], err);
    if (s == BS_OK && strcmp(spec->revision, out->commit) != 0)
        s = write_ref(repo_dir, spec->revision, out->commit, err);
    if (s == BS_OK &&
        asprintf(&out->path, "%s/snapshots/%s%s%s", repo_dir, out->commit, spec->file[0] ? "/" : "", spec->file) < 0) {
        out->path = NULL;
        s = bs_fail(err, BS_ENOMEM, "out of memory");
    }
    free_files(files, n);
    free(what);
    free(repo_dir);
    free(cache);
    client_close(&c);
    return s;
}

void hub_pull_result_free(hub_pull_result *r) {
    free(r->path);
    memset(r, 0, sizeof *r);
}
