/* server/ft_jobs.h — fine-tuning jobs inside `basalt serve`: one background
 * thread runs them one at a time, oldest first, while the server keeps
 * answering requests.  Every state change lands in the store (src/store)
 * before it is visible, so the database is the truth and the process is
 * disposable:
 *
 *   validating_files -> queued -> running -> succeeded | failed | cancelled
 *   queued/running -> paused -> (resume) queued -> running ...
 *
 * A job's method is "supervised" (train/sft.h) or "reinforcement"
 * (train/rft.h: GRPO with the job's grader; rollouts go through the served
 * model's scheduler).  A run writes a checkpoint (weights, optimizer state,
 * data position) every checkpoint_every steps under DATA/ft/<job-id>/ and records
 * it as a fine_tuning.job.checkpoint.  When the process dies (kill -9, power)
 * the job's row still says running; the next start puts such jobs back in
 * the queue and they continue from their last checkpoint, with the events
 * written so far kept.  Pausing and a clean shutdown checkpoint at the next
 * step boundary first, so they lose nothing.
 *
 * A succeeded job's LoRA adapter is written in PEFT format to
 * DATA/models/ft/<job-id>/ and served at once as
 * ft:<base>:<suffix>:<job-id>; at start every succeeded job's adapter is
 * loaded and served again.
 *
 * Training uses train_threads OpenBLAS threads (default 1), so inference
 * keeps the other cores. */
#ifndef BASALT_SERVER_FT_JOBS_H
#define BASALT_SERVER_FT_JOBS_H

#include <jansson.h>

#include "base/error.h"
#include "server/openai_request.h"
#include "store/store.h"
#include "train/rft.h"
#include "train/sft.h"

typedef struct basalt_server basalt_server;
typedef struct ft_runner ft_runner;

/* Recovers what a previous process left (running jobs back to the queue,
 * succeeded jobs' models served again) and starts the runner thread. */
bs_status ft_runner_open(basalt_server *s, int train_threads, ft_runner **out, bs_error *err);
/* A running job stops at its next step boundary, checkpoints and goes back
 * to the queue; then the thread ends. */
void ft_runner_close(ft_runner *r);

/* Hyperparameters as a job stores them: OpenAI's n_epochs, batch_size and
 * learning_rate_multiplier ("auto" or a number) plus basalt's lora_rank,
 * lora_alpha, lora_dropout, max_length, warmup_ratio, checkpoint_every and
 * eval_every.  Checks every field (param names it under prefix) and fills c
 * (absent and "auto" leave c's auto value); c may be NULL to check only. */
bs_status ft_hparams_decode(const json_t *h, const char *prefix, sft_config *c, api_error *a);

/* The same for method "reinforcement": OpenAI's n_epochs, batch_size,
 * learning_rate_multiplier, eval_interval, eval_samples, compute_multiplier
 * (scales the auto group size of 8) and reasoning_effort (only "auto") plus
 * basalt's group_size, max_completion_tokens, temperature, top_p, beta,
 * epsilon, epsilon_high, loss_type, scale_rewards, lora_rank, lora_alpha,
 * max_length, warmup_ratio, max_unscored_fraction and checkpoint_every. */
bs_status ft_rft_hparams_decode(const json_t *h, const char *prefix, rft_config *c, api_error *a);

/* Store a new job (status validating_files) with its first event and wake
 * the runner. */
bs_status ft_runner_submit(ft_runner *r, const store_job *j, bs_error *err);

typedef enum { FT_CANCEL, FT_PAUSE, FT_RESUME } ft_action;
/* Apply a client's action to job id and leave its new state in *out (free
 * with store_job_clear).  Refusals are 400s naming the job's status; an
 * unknown id is a 404. */
bs_status ft_runner_act(ft_runner *r, const char *id, ft_action action, store_job *out, api_error *a);

/* Unix time the running job id should finish by, from its pace so far;
 * -1 when unknown (not running, or no step done yet). */
long long ft_runner_estimate(ft_runner *r, const char *id);

/* "ft:<base>:<suffix>:<job-id>": the suffix lowercased with anything but
 * [a-z0-9._-] turned into '-' (an absent suffix leaves its field empty). */
void ft_model_name(const char *base, const char *suffix, const char *job_id, char *out, size_t cap);

#endif
