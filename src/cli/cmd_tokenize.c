/* cli/cmd_tokenize.c — `basalt tokenize` and `basalt detokenize`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "format/gguf.h"

int cli_report(const char *cmd, const bs_error *err) {
    fprintf(stderr, "basalt %s: %s\n", cmd, err->msg);
    return 1;
}

static int has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

bs_status cli_open_tokenizer(const char *path, bs_tokenizer **out, bs_error *err) {
    if (bs_is_directory(path)) return tok_open_hf(path, out, err);
    if (!has_suffix(path, ".gguf") && !bs_file_exists(path))
        return bs_fail(err, BS_ENOTFOUND, "%s: no such model directory or .gguf file", path);
    gguf_file *g;
    bs_status s = gguf_open(path, &g, err);
    if (s != BS_OK) return s;
    s = tok_open_gguf(g, out, err);
    gguf_close(g);
    return s;
}

static const cli_command tokenize_cmd = {
    "tokenize", "MODEL (--text STR | --file F) [--special]",
    "Print the token ids of a text on one line, space separated.",
    "MODEL is a Hugging Face model directory (tokenizer.json) or a .gguf file\n"
    "(vocab-only files work).  A BOS token is added only when the model's own\n"
    "rules add one.",
};

int cmd_tokenize(int argc, char **argv) {
    const char *text = NULL, *file = NULL, *model = NULL;
    int special = 0;
    const cli_opt opts[] = {
        {"--text", NULL, OPT_STRING, &text, "STR", "the text to tokenize"},
        {"--file", NULL, OPT_STRING, &file, "F", "read the text from file F (bytes as they are)"},
        {"--special", NULL, OPT_FLAG, &special, NULL,
         "parse special tokens written in the text (e.g. <|im_start|>)"},
        {0},
    };
    int rc = cli_parse(&tokenize_cmd, opts, argc, argv, &model, 1, 1);
    if (rc) return rc == 1 ? 0 : 2;
    if (!text == !file) {
        fprintf(stderr, "basalt tokenize: give exactly one of --text or --file\n");
        return 2;
    }
    bs_error err = {0};
    char *buf = NULL;
    size_t len = 0;
    if (file) {
        if (bs_file_read(file, &buf, &len, &err) != BS_OK) return cli_report("tokenize", &err);
        text = buf;
    } else {
        len = strlen(text);
    }
    bs_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int status = 0;
    if (cli_open_tokenizer(model, &tok, &err) != BS_OK ||
        tok_encode(tok, text, len, TOK_ADD_SPECIAL | (special ? TOK_PARSE_SPECIAL : 0), &ids, &n, &err) != BS_OK) {
        status = cli_report("tokenize", &err);
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    free(ids);
    tok_close(tok);
    free(buf);
    return status;
}

static const cli_command detokenize_cmd = {
    "detokenize", "MODEL --ids \"1 2 3\"",
    "Print the text of a sequence of token ids.",
    "Special tokens are written out as their text (like Hugging Face's decode\n"
    "with skip_special_tokens=False).",
};

int cmd_detokenize(int argc, char **argv) {
    const char *ids_arg = NULL, *model = NULL;
    const cli_opt opts[] = {
        {"--ids", NULL, OPT_STRING, &ids_arg, "\"ID ...\"", "token ids separated by spaces or commas"},
        {0},
    };
    int rc = cli_parse(&detokenize_cmd, opts, argc, argv, &model, 1, 1);
    if (rc) return rc == 1 ? 0 : 2;
    if (!ids_arg) {
        fprintf(stderr, "basalt detokenize: --ids is required\n");
        return 2;
    }
    int32_t *ids;
    int n;
    if (cli_parse_ids("--ids", ids_arg, &ids, &n)) return 2;
    bs_error err = {0};
    bs_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    int status = 0;
    if (cli_open_tokenizer(model, &tok, &err) != BS_OK ||
        tok_decode(tok, ids, (size_t)n, TOK_DECODE_SPECIAL, &text, &len, &err) != BS_OK) {
        status = cli_report("detokenize", &err);
    } else {
        fwrite(text, 1, len, stdout);
        printf("\n");
    }
    free(text);
    tok_close(tok);
    free(ids);
    return status;
}
