/* train/bpe.h — train a byte-level BPE tokenizer on text and write it as a
 * Hugging Face tokenizer.json (what tok_open_hf and the `tokenizers` library
 * load).
 *
 * Pre-tokenization is Qwen2's: its regex (single digits, so numbers are
 * spelled digit by digit, which small models learn arithmetic from) followed
 * by GPT-2's byte-to-unicode mapping.  Training is the classic algorithm:
 * count the pre-tokenized words, then repeatedly merge the most frequent
 * adjacent pair (ties: the smallest pair of ids) until the requested number
 * of merges is made or no pair occurs twice.  Ids: 0..255 are the bytes,
 * merges follow in the order learned, special tokens come last.  Everything
 * is deterministic in the order texts are added. */
#ifndef BASALT_TRAIN_BPE_H
#define BASALT_TRAIN_BPE_H

#include <stddef.h>

#include "base/error.h"

typedef struct bpe_trainer bpe_trainer;

bs_status bpe_trainer_open(bpe_trainer **out, bs_error *err);
void bpe_trainer_close(bpe_trainer *t);

/* Pre-tokenize text and count its words. */
bs_status bpe_add_text(bpe_trainer *t, const char *text, size_t len, bs_error *err);

/* Learn up to n_merges merges from the words added so far (once). */
bs_status bpe_train(bpe_trainer *t, int n_merges, bs_error *err);
int bpe_vocab_size(const bpe_trainer *t); /* bytes + merged tokens, without specials */

/* Write tokenizer.json: the vocabulary and merges, then the special tokens
 * (ids bpe_vocab_size(t) + i, in order) as added tokens. */
bs_status bpe_write_tokenizer_json(const bpe_trainer *t, const char *const *specials, int n_specials,
                                   const char *path, bs_error *err);

#endif
