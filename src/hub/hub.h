/* hub/hub.h — model specs and basalt's local model cache.
 *
 * Owns the naming of hub models ("ORG/REPO[@REV][:FILE]"), the validation of
 * every repo name and file path that reaches the filesystem, and the cache
 * layout, which is huggingface_hub's so the same tools can read it:
 *
 *   CACHE/models--ORG--REPO/blobs/<sha256 or git blob id>     file contents
 *   CACHE/models--ORG--REPO/snapshots/<commit>/<path>          relative symlinks
 *   CACHE/models--ORG--REPO/refs/<revision>                    commit of a branch/tag
 *
 * CACHE is DATA/models, DATA being the data directory (bs_data_dir in
 * base/paths.h: --data, $BASALT_DATA, $XDG_DATA_HOME/basalt or
 * ~/.local/share/basalt).  Resolving needs no network: refs/ maps a
 * revision to the commit pulled last.  Downloading lives in hub/pull.h. */
#ifndef BASALT_HUB_HUB_H
#define BASALT_HUB_HUB_H

#include "base/error.h"

#define HUB_REPO_MAX 96 /* the hub's own limit on a repo id */
#define HUB_REV_MAX 255
#define HUB_PATH_MAX 1024
#define HUB_COMMIT_LEN 40

typedef struct hub_spec {
    char repo[HUB_REPO_MAX + 1];    /* "ORG/NAME" */
    char revision[HUB_REV_MAX + 1]; /* branch, tag or commit; "main" when not given */
    char file[HUB_PATH_MAX + 1];    /* one file of the repo, or "" for the model files */
} hub_spec;

/* Parse "ORG/REPO", "ORG/REPO@REV", "ORG/REPO:FILE" or "ORG/REPO@REV:FILE".
 * The revision ends at ':' (git refs cannot contain one).  Repo ids follow
 * the hub's rules (letters, digits, '-', '_', '.', no "--" or "..", no
 * leading/trailing '-' or '.'), which also keeps models--ORG--REPO unique. */
bs_status hub_parse_spec(const char *spec, hub_spec *out, bs_error *err);

/* 1 when rel is a relative path that stays inside the directory it is joined
 * to: non-empty, no leading '/', no empty, "." or ".." component, no
 * backslash or control character, shorter than HUB_PATH_MAX. */
int hub_path_is_safe(const char *rel);

/* 1 when s is exactly 40 lowercase hex digits (a git commit or blob id). */
int hub_is_commit(const char *s);

/* The cache root, bs_data_dir(data_dir)/models; data_dir may be NULL.
 * Caller frees *out. */
bs_status hub_cache_dir(const char *data_dir, char **out, bs_error *err);

/* CACHE/models--ORG--REPO for a valid repo id (caller frees; NULL on OOM). */
char *hub_repo_dir(const char *cache_dir, const char *repo);

/* What `--model` arguments go through.  An existing local path is returned
 * unchanged; anything else must be a hub spec, resolved inside cache_dir to
 * the snapshot directory of the revision's commit, or to FILE inside it.
 * BS_ENOTFOUND, with a message suggesting `basalt pull`, when it has not
 * been pulled.  Caller frees *path_out. */
bs_status hub_resolve_in(const char *cache_dir, const char *spec, char **path_out, bs_error *err);

/* hub_resolve_in with the default cache, hub_cache_dir(NULL). */
bs_status hub_resolve_model(const char *spec, char **path_out, bs_error *err);

#endif
