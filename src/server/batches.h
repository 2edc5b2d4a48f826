/* server/batches.h — the Batch API's executor.
 *
 * A batch is a store document (kind "batch", owner = the tenant that made
 * it) holding OpenAI's Batch object.  One worker thread owns every batch
 * that is not finished: it validates the input file line by line
 * (validating -> failed with the bad lines, or in_progress; unlike OpenAI a
 * line may call any batch endpoint, not only the batch's), then sends each
 * line as an HTTP request to this server's own URL, so routing, fallbacks,
 * guardrails, limits and usage apply exactly as to a client, carrying the
 * internal headers (server/internal_auth.h) that name the API key that
 * made the batch.
 *
 * Low priority: a line for a model served locally is sent only while that
 * model's scheduler has no queue and no sequences besides the batches' own
 * (interactive traffic first); every batch has at most BATCH_CONCURRENCY
 * requests in flight whatever the model.  429/502/503/504 answers are
 * retried with backoff (honoring Retry-After) before they count as failed;
 * a request that never got an answer (the server is stopping) is sent again.
 *
 * Progress survives restarts: each finished line is appended, as its own
 * write, to DATA/batches/<id>/output.part (2xx answers) or errors.part, and
 * a restarted runner skips the custom_ids found there (custom_ids are unique
 * per file), so no line runs twice to completion and none is lost.
 * Finishing (completed, cancelled after a cancel, expired after the 24 h
 * window, failed on an I/O error) turns the non-empty parts into files of
 * purpose "batch_output": output_file_id and error_file_id. */
#ifndef BASALT_SERVER_BATCHES_H
#define BASALT_SERVER_BATCHES_H

#include <jansson.h>

#include "base/error.h"

typedef struct basalt_server basalt_server;
typedef struct batch_runner batch_runner;

#define BATCH_CONCURRENCY 4         /* requests in flight per batch */
#define BATCH_MAX_REQUESTS 50000    /* requests per input file, as OpenAI */
#define BATCH_WINDOW_S (24 * 3600)  /* completion_window "24h" */

/* 1 when a batch, or one line of its input, may call endpoint
 * ("/v1/chat/completions", …). */
int batch_endpoint_known(const char *endpoint);
/* The endpoints, comma-separated, for error messages. */
const char *batch_endpoints_text(void);

/* Loads the batches a previous process left unfinished (they resume) and
 * starts the worker; the server's URL must be known. */
bs_status batch_runner_open(basalt_server *s, batch_runner **out, bs_error *err);
/* Stops the worker: requests in flight are abandoned (sent again after a
 * restart), progress is saved.  NULL is fine. */
void batch_runner_close(batch_runner *br);

/* Stores batch (a Batch object in status "validating") for owner (the
 * tenant) and hands it to the worker, whose requests act as API key key_id
 * ("" when open). */
bs_status batch_runner_create(batch_runner *br, const char *owner, const char *key_id, const json_t *batch,
                              bs_error *err);
/* The current object of a batch the worker holds (a new reference; fresher
 * than the stored one), NULL when it holds none of that id. */
json_t *batch_runner_object(batch_runner *br, const char *id);
/* Asks a batch the worker holds to stop: *out (a new reference) is its
 * object, now "cancelling".  BS_ENOTFOUND when the worker does not hold it
 * (finished or unknown), BS_EINVAL while it is finalizing. */
bs_status batch_runner_cancel(batch_runner *br, const char *id, json_t **out, bs_error *err);

#endif
