/* train/dataset.h — fine-tuning data: a JSONL file read, validated and
 * tokenized with per-token loss masks before any training starts.
 *
 * Formats (one JSON object per line; blank lines are skipped), detected from
 * the first valid line unless a hint fixes it; mixing them is an error:
 *   chat               {"messages":[...], "tools"?:[...], "parallel_tool_calls"?:bool}
 *                      OpenAI's fine-tuning format; assistant messages may
 *                      carry "weight": 0 or 1 (0 leaves that turn out of the loss)
 *   prompt-completion  {"prompt":"...", "completion":"..."}: loss on the completion
 *   text               {"text":"..."}: continued pre-training, loss on every token
 *
 * Validation comes first and is complete: every bad line (invalid JSON,
 * missing or unknown roles, no assistant turn, empty assistant turn, weight
 * not 0/1, too many tokens, ...) is reported with its line number in one
 * report, and a file with any problem loads nothing.
 *
 * Chat loss masks follow the model's own chat template, as TRL does without
 * {% generation %} markers: for each assistant turn k the conversation up to
 * k-1 is rendered with the generation prompt and the conversation up to k
 * without it; the text between is the turn (its content, tool calls and end
 * of turn marker, not the role header).  When those prefixes are also a
 * prefix of the whole conversation's render, one example carries every turn.
 * Templates that rewrite earlier turns (e.g. dropping old reasoning) break
 * that; such a conversation becomes one example per trained turn, each the
 * render the model sees when producing that turn, with loss on it alone.
 *
 * Chat text is tokenized like the server's prompts (special tokens parsed;
 * BOS added only when the template did not write it); prompt-completion and
 * text examples get the model's BOS rule and end with EOS, which is trained.
 *
 * A dataset is immutable after open and may be shared by threads. */
#ifndef BASALT_TRAIN_DATASET_H
#define BASALT_TRAIN_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

typedef enum {
    DATASET_AUTO, /* detect from the first valid line */
    DATASET_CHAT,
    DATASET_PROMPT_COMPLETION,
    DATASET_TEXT,
} dataset_format;

const char *dataset_format_name(dataset_format f);

typedef struct dataset_opts {
    int max_length;     /* tokens per example and per packed sequence (default 1024) */
    int truncate;       /* 1: cut longer examples to max_length, keeping the start; 0 (default): report them */
    int assistant_only; /* chat: loss on assistant turns only (default 1); 0: on every token */
    int pack;           /* 1: whole examples packed in file order into sequences of up to max_length
                         * tokens, with segment ids; 0 (default): one example per sequence */
    int max_problems;   /* problems listed in the report (default 50); the rest are counted */
} dataset_opts;

void dataset_opts_default(dataset_opts *o);

/* One training sequence.  Position i holds tokens[i]; loss_mask[i] = 1 when
 * tokens[i] is a target, i.e. the loss includes predicting it from the
 * tokens before it in the same segment (the first token of a segment has
 * nothing before it and is never predicted).  Attention must not cross
 * segments; position restarts at 0 with each segment.  Unpacked sequences
 * are one segment. */
typedef struct dataset_seq {
    const int32_t *tokens;
    const uint8_t *loss_mask;
    const int32_t *segment;
    const int32_t *position;
    size_t len;
} dataset_seq;

typedef struct dataset_stats {
    size_t lines;       /* non-blank lines read */
    size_t examples;    /* tokenized examples (a rewriting template's conversation may give several) */
    size_t sequences;   /* what dataset_count returns */
    size_t tokens;      /* all tokens */
    size_t loss_tokens; /* tokens with loss_mask 1 */
    size_t truncated;   /* examples cut to max_length */
} dataset_stats;

typedef struct dataset dataset;

/* Read, validate and tokenize path.  tmpl is needed for chat data only (may
 * be NULL otherwise).  On bad data returns BS_EFORMAT; err names the file,
 * the number of problems and the first one, and *report (when report is not
 * NULL) gets the whole list, one "line N: reason" per line, malloc'ed.
 * *report is NULL on success and for failures that are not about the data
 * (the file cannot be read, out of memory). */
bs_status dataset_open(const char *path, dataset_format hint, const bs_tokenizer *tok, const chat_template *tmpl,
                       const dataset_opts *opts, dataset **out, char **report, bs_error *err);
void dataset_close(dataset *ds);

dataset_format dataset_format_of(const dataset *ds);
const dataset_stats *dataset_stats_of(const dataset *ds);
/* Number of sequences (examples, or packs of them). */
size_t dataset_count(const dataset *ds);
/* Sequence i < dataset_count(ds); the arrays point into ds. */
void dataset_get(const dataset *ds, size_t i, dataset_seq *out);

/* tok_encode flags for a rendered chat text: special tokens parsed, BOS
 * added only when the template did not write it (the server's rule). */
int dataset_chat_flags(const bs_tokenizer *tok, const char *text);

#endif
