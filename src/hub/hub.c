#include "hub/hub.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/file.h"
#include "base/paths.h"

static int repo_char(char c) { return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.'; }

static int valid_repo_part(const char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!repo_char(s[i])) return 0;
    return s[0] != '-' && s[0] != '.' && s[n - 1] != '-' && s[n - 1] != '.';
}

static bs_status valid_repo(const char *spec, const char *repo, size_t n, bs_error *err) {
    const char *slash = memchr(repo, '/', n);
    if (!slash) return bs_fail(err, BS_EINVAL, "%s: expected ORG/REPO[@REVISION][:FILE]", spec);
    size_t org_len = (size_t)(slash - repo);
    if (n > HUB_REPO_MAX || !valid_repo_part(repo, org_len) || !valid_repo_part(slash + 1, n - org_len - 1))
        return bs_fail(err, BS_EINVAL, "%s: invalid repo id (letters, digits, '-', '_', '.'; at most %d characters)",
                       spec, HUB_REPO_MAX);
    for (size_t i = 0; i + 1 < n; i++)
        if ((repo[i] == '-' || repo[i] == '.') && repo[i + 1] == repo[i])
            return bs_fail(err, BS_EINVAL, "%s: invalid repo id ('--' and '..' are not allowed)", spec);
    return BS_OK;
}

bs_status hub_parse_spec(const char *spec, hub_spec *out, bs_error *err) {
    memset(out, 0, sizeof *out);
    size_t n = strcspn(spec, ":@");
    bs_status s = valid_repo(spec, spec, n, err);
    if (s != BS_OK) return s;
    memcpy(out->repo, spec, n);
    const char *p = spec + n;
    strcpy(out->revision, "main");
    if (*p == '@') {
        size_t r = strcspn(p + 1, ":");
        if (r == 0 || r > HUB_REV_MAX)
            return bs_fail(err, BS_EINVAL, "%s: revision after '@' must have 1 to %d characters", spec, HUB_REV_MAX);
        memcpy(out->revision, p + 1, r);
        out->revision[r] = '\0';
        if (!hub_path_is_safe(out->revision))
            return bs_fail(err, BS_EINVAL, "%s: invalid revision '%s'", spec, out->revision);
        p += 1 + r;
    }
    if (*p == ':') {
        if (!hub_path_is_safe(p + 1))
            return bs_fail(err, BS_EINVAL, "%s: invalid file name '%s' (a relative path inside the repo)", spec, p + 1);
        strcpy(out->file, p + 1);
    } else if (*p) {
        return bs_fail(err, BS_EINVAL, "%s: expected ORG/REPO[@REVISION][:FILE]", spec);
    }
    return BS_OK;
}

int hub_path_is_safe(const char *rel) {
    size_t n = strlen(rel);
    if (n == 0 || n >= HUB_PATH_MAX || rel[0] == '/') return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)rel[i] < 0x20 || rel[i] == 0x7f || rel[i] == '\\') return 0;
    for (const char *c = rel; *c;) {
        size_t len = strcspn(c, "/");
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.')) return 0;
        c += len;
        if (*c == '/') c++;
        if (*c == '\0' && c[-1] == '/') return 0; /* trailing slash: an empty last component */
    }
    return 1;
}

int hub_is_commit(const char *s) {
    for (int i = 0; i < HUB_COMMIT_LEN; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f')) return 0;
    return s[HUB_COMMIT_LEN] == '\0';
}

static char *join3(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s%s%s", a, b, c);
    return out;
}

bs_status hub_cache_dir(const char *data_dir, char **out, bs_error *err) {
    char *data = NULL;
    *out = NULL;
    bs_status s = bs_data_dir(data_dir, &data, err);
    if (s != BS_OK) return s;
    *out = join3(data, "/models", "");
    free(data);
    return *out ? BS_OK : bs_fail(err, BS_ENOMEM, "out of memory");
}

char *hub_repo_dir(const char *cache_dir, const char *repo) {
    size_t n = strlen(cache_dir) + strlen(repo) + 16;
    char *out = malloc(n);
    if (!out) return NULL;
    char *p = out + snprintf(out, n, "%s/models--", cache_dir);
    for (const char *r = repo; *r; r++) {
        if (*r == '/') *p++ = '-'; /* '/' becomes "--", which repo ids cannot contain */
        *p++ = *r == '/' ? '-' : *r;
    }
    *p = '\0';
    return out;
}

/* Commit that refs/<revision> names, or the revision itself when it is a
 * commit with a snapshot; "" when neither is in the cache. */
static bs_status cached_commit(const char *repo_dir, const char *revision, char commit[HUB_COMMIT_LEN + 1],
                               bs_error *err) {
    commit[0] = '\0';
    char *path = join3(repo_dir, "/snapshots/", revision);
    if (!path) return bs_fail(err, BS_ENOMEM, "out of memory");
    int have_snapshot = hub_is_commit(revision) && bs_is_directory(path);
    free(path);
    if (have_snapshot) {
        strcpy(commit, revision);
        return BS_OK;
    }
    path = join3(repo_dir, "/refs/", revision);
    if (!path) return bs_fail(err, BS_ENOMEM, "out of memory");
    FILE *fp = fopen(path, "r");
    if (fp) {
        char line[64] = "";
        if (!fgets(line, sizeof line, fp)) line[0] = '\0';
        fclose(fp);
        line[strcspn(line, "\r\n")] = '\0';
        if (!hub_is_commit(line)) {
            bs_status s = bs_fail(err, BS_EFORMAT, "%s: not a commit id", path);
            free(path);
            return s;
        }
        strcpy(commit, line);
    }
    free(path);
    return BS_OK;
}

static bs_status resolve(const char *cache_dir, const hub_spec *hs, const char *spec, char **path_out, bs_error *err) {
    char *repo_dir = hub_repo_dir(cache_dir, hs->repo);
    if (!repo_dir) return bs_fail(err, BS_ENOMEM, "out of memory");
    char commit[HUB_COMMIT_LEN + 1];
    bs_status s = cached_commit(repo_dir, hs->revision, commit, err);
    if (s == BS_OK && !commit[0])
        s = bs_fail(err, BS_ENOTFOUND, "%s: %s@%s is not in the model cache %s: run `basalt pull %s`", spec, hs->repo,
                    hs->revision, cache_dir, spec);
    char *path = NULL;
    if (s == BS_OK) {
        if (asprintf(&path, "%s/snapshots/%s%s%s", repo_dir, commit, hs->file[0] ? "/" : "", hs->file) < 0) path = NULL;
        if (!path) s = bs_fail(err, BS_ENOMEM, "out of memory");
    }
    free(repo_dir);
    if (s != BS_OK) return s;
    struct stat st;
    if (stat(path, &st) != 0) {
        s = bs_fail(err, BS_ENOTFOUND, "%s: %s is not in the cached snapshot %s: run `basalt pull %s`", spec,
                    hs->file[0] ? hs->file : "the model", commit, spec);
        free(path);
        return s;
    }
    *path_out = path;
    return BS_OK;
}

/* An existing file or directory is its own answer, whatever it looks like. */
static int local_path(const char *spec, char **path_out, bs_status *s, bs_error *err) {
    struct stat st;
    if (stat(spec, &st) != 0) return 0;
    *path_out = strdup(spec);
    *s = *path_out ? BS_OK : bs_fail(err, BS_ENOMEM, "out of memory");
    return 1;
}

static bs_status parse_model(const char *spec, hub_spec *hs, bs_error *err) {
    if (hub_parse_spec(spec, hs, NULL) == BS_OK) return BS_OK;
    return bs_fail(err, BS_ENOTFOUND, "%s: no such file or directory (and not a hub model ORG/REPO[@REVISION][:FILE])",
                   spec);
}

bs_status hub_resolve_in(const char *cache_dir, const char *spec, char **path_out, bs_error *err) {
    *path_out = NULL;
    hub_spec hs;
    bs_status s;
    if (local_path(spec, path_out, &s, err)) return s;
    s = parse_model(spec, &hs, err);
    return s != BS_OK ? s : resolve(cache_dir, &hs, spec, path_out, err);
}

bs_status hub_resolve_model(const char *spec, char **path_out, bs_error *err) {
    *path_out = NULL;
    bs_status s;
    if (local_path(spec, path_out, &s, err)) return s;
    char *cache = NULL;
    s = hub_cache_dir(NULL, &cache, err);
    if (s != BS_OK) return s;
    s = hub_resolve_in(cache, spec, path_out, err);
    free(cache);
    return s;
}
