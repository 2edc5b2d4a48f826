/* hub/pull.h — download a model from a Hugging Face hub into the cache.
 *
 * Owns the hub's HTTP protocol, spoken with libcurl: the file list of a
 * revision (GET /api/models/REPO/revision/REV?blobs=true, which also pins the
 * commit), the files themselves (GET /REPO/resolve/COMMIT/PATH, following
 * redirects to a CDN), bearer auth from HF_TOKEN, bounded retries with
 * backoff, resume of `blobs/<key>.incomplete` with a Range request, sha256
 * verification of LFS files, and writing snapshots/ and refs/ (layout in
 * hub/hub.h).  A file already in the snapshot is not downloaded again. */
#ifndef BASALT_HUB_PULL_H
#define BASALT_HUB_PULL_H

#include <stdint.h>

#include "base/error.h"
#include "hub/hub.h"

/* Called as bytes of one file arrive; done starts at what was already on
 * disk (a resumed download) and ends at total. */
typedef void (*hub_progress_fn)(void *ctx, const char *file, uint64_t done, uint64_t total);

typedef struct hub_pull_opts {
    const char *endpoint;     /* NULL: $HF_ENDPOINT, else https://huggingface.co */
    const char *token;        /* NULL: $HF_TOKEN; "" for none */
    const char *cache_dir;    /* NULL: hub_cache_dir(NULL) */
    hub_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} hub_pull_opts;

typedef struct hub_pull_result {
    char commit[HUB_COMMIT_LEN + 1];
    char *path;           /* the snapshot directory, or FILE inside it (owned) */
    int files_downloaded; /* fetched by this pull, in whole or resumed */
    int files_cached;     /* already present */
    uint64_t bytes_downloaded;
} hub_pull_result;

/* Files a whole-repo pull takes: the configs, tokenizer files and chat
 * template basalt reads, and the top-level *.safetensors weights with their
 * index; never other weight formats (*.bin, *.pt, *.h5, *.msgpack, onnx/,
 * original/ ...). */
int hub_wants_file(const char *rfilename);

/* Pull spec->file, or the files hub_wants_file picks, at spec->revision. */
bs_status hub_pull(const hub_spec *spec, const hub_pull_opts *opts, hub_pull_result *out, bs_error *err);
void hub_pull_result_free(hub_pull_result *r);

#endif
