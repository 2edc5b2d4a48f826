/* cli/commands.h — the `basalt` subcommands (argument parsing and wiring
 * only) and the helpers they share for opening models and tokenizers.
 * Each returns the process exit status: 0 ok, 1 runtime error, 2 usage. */
#ifndef BASALT_CLI_COMMANDS_H
#define BASALT_CLI_COMMANDS_H

#include "base/error.h"
#include "engine/model.h"
#include "tokenizer/tokenizer.h"

int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_build_default(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_keys(int argc, char **argv);

/* Only the tokenizer of MODEL (an HF directory or a .gguf file, including
 * vocab-only GGUFs): no weights are mapped. */
bs_status cli_open_tokenizer(const char *path, bs_tokenizer **out, bs_error *err);

/* Report err on stderr as "basalt CMD: message" and return exit status 1. */
int cli_report(const char *cmd, const bs_error *err);

#endif
