/* cli/main.c — the `basalt` command: dispatch to subcommands.
 * Library code never exits; only this layer turns errors into statuses. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

#define BASALT_VERSION "0.1.0"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"run", cmd_run, "the main job: serve the built-in default model (built once, a few minutes)"},
    {"generate", cmd_generate, "continue a raw prompt with a model"},
    {"logits", cmd_logits, "print the top logits for the last of a list of token ids"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"detokenize", cmd_detokenize, "print the text of token ids"},
    {"template", cmd_template, "print the prompt a chat template renders for a conversation"},
    {"bench", cmd_bench, "measure prefill and decode speed"},
    {"serve", cmd_serve, "serve models behind the OpenAI-compatible HTTP API"},
    {"pull", cmd_pull, "download a model from the Hugging Face hub into the model cache"},
    {"eval", cmd_eval, "evaluate models on a JSONL set with graders, side by side (base vs tuned)"},
    {"tune", cmd_tune, "fine-tune a model on a JSONL dataset (LoRA or full) and write the result"},
    {"quantize", cmd_quantize, "write a model as a GGUF file with quantized weights"},
    {"merge", cmd_merge, "merge a LoRA adapter into its base model (Hugging Face safetensors)"},
    {"demo", cmd_demo, "reinforcement fine-tuning end to end: held-out reward before and after (make demo)"},
    {"build-default", cmd_build_default, "build the embedded default model (a few minutes, once)"},
    {"config", cmd_config, "validate a gateway configuration file (config check FILE.yaml)"},
    {"keys", cmd_keys, "create, list and revoke API keys (keys create --name N --scopes admin)"},
};

static void usage(FILE *out) {
    fprintf(out,
            "basalt %s — a self-hosted model platform\n\n"
            "usage: basalt COMMAND [ARGS]   (basalt COMMAND --help for its flags)\n\n"
            "commands:\n",
            BASALT_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nMODEL is a Hugging Face model directory (config.json, *.safetensors,\n"
                 "tokenizer.json) or a .gguf file.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("basalt %s\n", BASALT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "basalt: unknown command '%s' (see basalt --help)\n", argv[1]);
    return 2;
}
