/* cli/cmd_merge.c — `basalt merge BASE ADAPTER OUT_DIR`: fold a PEFT LoRA
 * adapter into its base and write a plain Hugging Face checkpoint
 * (engine/adapter.h adapter_merge_hf does the work), e.g. for Bedrock
 * Custom Model Import or servers without adapter support. */
#include <stdio.h>

#include "base/log.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "engine/adapter.h"

static const cli_command merge_cmd = {
    "merge", "BASE ADAPTER OUT_DIR [--threads N]",
    "Merge a LoRA adapter into its base model and write a Hugging Face checkpoint.",
    "BASE is the Hugging Face model directory the adapter was trained on;\n"
    "ADAPTER a PEFT directory (adapter_config.json + adapter_model.safetensors,\n"
    "as `basalt` fine-tuning jobs and PEFT save_pretrained write).  OUT_DIR gets\n"
    "model.safetensors with W + scale * B A for every adapted projection in\n"
    "the base's dtype (F32/F16/BF16; computed in F32) and every other tensor\n"
    "as stored, plus config.json, generation_config.json and the tokenizer\n"
    "files.  A GGUF base is refused: merge from the checkpoint it came from.\n"
    "To serve an adapter without merging: basalt serve --lora NAME=ADAPTER.",
};

int cmd_merge(int argc, char **argv) {
    const char *pos[3] = {0};
    int threads = 0;
    const cli_opt opts[] = {
        {"--threads", "-t", OPT_INT, &threads, "N", "threads for loading the base (default: all cores)"},
        {0},
    };
    int rc = cli_parse(&merge_cmd, opts, argc, argv, pos, 3, 3);
    if (rc) return rc == 1 ? 0 : 2;
    bs_error err = {0};
    bs_model *m = NULL;
    bs_adapter *a = NULL;
    bs_model_params mp = {.n_threads = threads, .plain_layout = 1}; /* the merge reads the checkpoint files */
    double t0 = bs_now();
    bs_status st = model_open(pos[0], &mp, &m, &err);
    if (!st) st = adapter_load_peft(m, pos[1], &a, &err);
    if (!st) st = adapter_merge_hf(a, pos[2], &err);
    adapter_close(a);
    model_close(m);
    if (st) return cli_report("merge", &err);
    fprintf(stderr, "basalt merge: wrote %s in %.1f s\n", pos[2], bs_now() - t0);
    return 0;
}
