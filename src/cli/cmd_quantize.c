/* cli/cmd_quantize.c — `basalt quantize IN OUT.gguf TYPE`: write a model as a
 * GGUF file llama.cpp can read (engine/quantize.h does the work). */
#include <stdio.h>

#include "base/dtype.h"
#include "base/log.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "engine/quantize.h"

static const cli_command quantize_cmd = {
    "quantize", "IN OUT.gguf TYPE [--threads N]",
    "Write a model as a GGUF file (llama.cpp's format) with TYPE weights.",
    "IN is a Hugging Face model directory (F32/F16/BF16 safetensors) or a .gguf\n"
    "file.  TYPE is f32, f16 or bf16 (every matrix in that type, like\n"
    "convert_hf_to_gguf --outtype), or q8_0, q4_0, q4_k, q6_k or q4_k_m\n"
    "(like llama-quantize: the output head gets Q6_K, and q4_k_m also gives\n"
    "Q6_K to attn_v and ffn_down on some layers).  Norms and biases stay F32.\n"
    "The tokenizer and chat template travel with the weights.",
};

static void show_progress(void *ctx, int i, int n, const char *name, bs_dtype dtype) {
    (void)ctx;
    fprintf(stderr, "[%*d/%d] %-32s %s\n", n >= 100 ? 3 : 2, i + 1, n, name, bs_dtype_name(dtype));
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {0};
    int threads = 0;
    const cli_opt opts[] = {
        {"--threads", "-t", OPT_INT, &threads, "N", "conversion threads (default: all cores)"},
        {0},
    };
    int rc = cli_parse(&quantize_cmd, opts, argc, argv, pos, 3, 3);
    if (rc) return rc == 1 ? 0 : 2;
    bs_error err = {0};
    bs_quant q;
    if (quant_parse(pos[2], &q, &err) != BS_OK) {
        fprintf(stderr, "basalt quantize: %s\n", err.msg);
        return 2;
    }
    quantize_params p = {.n_threads = threads, .progress = show_progress};
    double t0 = bs_now();
    if (quantize_to_gguf(pos[0], pos[1], q, &p, &err) != BS_OK) return cli_report("quantize", &err);
    fprintf(stderr, "basalt quantize: wrote %s (%s) in %.1f s\n", pos[1], quant_name(q), bs_now() - t0);
    return 0;
}
