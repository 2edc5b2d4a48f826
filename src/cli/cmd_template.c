/* cli/cmd_template.c — `basalt template`: render a conversation with a chat
 * template and print the prompt exactly (no newline added). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "template/chat_template.h"

static const cli_command template_cmd = {
    "template", "MODEL_OR_JINJA_FILE --messages FILE.json [--tools FILE.json] [--add-generation-prompt] [--var KEY=JSON]...",
    "Print the prompt a chat template renders for a conversation.",
    "MODEL (an HF directory or a .gguf file) supplies its chat template and its\n"
    "bos_token/eos_token; any other file is read as a Jinja template, with\n"
    "bos_token and eos_token \"\" unless given with --var.  The output is byte for\n"
    "byte what Hugging Face's apply_chat_template renders; nothing is appended.",
};

static json_t *load_json(const char *flag, const char *path, bs_error *err) {
    json_error_t jerr;
    json_t *v = json_load_file(path, JSON_DECODE_ANY, &jerr);
    if (!v) bs_fail(err, BS_EFORMAT, "%s %s:%d:%d: %s", flag, path, jerr.line, jerr.column, jerr.text);
    return v;
}

static int is_model(const char *path) {
    size_t n = strlen(path);
    return bs_is_directory(path) || (n > 5 && strcmp(path + n - 5, ".gguf") == 0);
}

int cmd_template(int argc, char **argv) {
    const char *path = NULL, *messages_path = NULL, *tools_path = NULL, *name = NULL;
    int add_generation_prompt = 0;
    uint64_t now = 0;
    cli_string_list vars = {0};
    const cli_opt opts[] = {
        {"--messages", NULL, OPT_STRING, &messages_path, "FILE.json", "the conversation: a JSON array of messages"},
        {"--tools", NULL, OPT_STRING, &tools_path, "FILE.json", "tool definitions: a JSON array"},
        {"--add-generation-prompt", NULL, OPT_FLAG, &add_generation_prompt, NULL,
         "end with the header of the assistant's next turn"},
        {"--var", NULL, OPT_STRING_LIST, &vars, "KEY=JSON",
         "an extra template variable, e.g. enable_thinking=false (repeatable)"},
        {"--name", NULL, OPT_STRING, &name, "NAME", "a named template of the model, e.g. tool_use"},
        {"--now", NULL, OPT_U64, &now, "EPOCH", "the clock strftime_now reads (Unix time; default: now)"},
        {0},
    };
    int rc = cli_parse(&template_cmd, opts, argc, argv, &path, 1, 1);
    if (rc) return rc == 1 ? 0 : 2;
    if (!messages_path) {
        fprintf(stderr, "basalt template: --messages is required\n");
        return 2;
    }
    json_t *extra = json_object();
    for (int i = 0; i < vars.n; i++) {
        const char *eq = strchr(vars.items[i], '=');
        json_error_t jerr;
        json_t *v = eq ? json_loads(eq + 1, JSON_DECODE_ANY, &jerr) : NULL;
        if (!v) {
            fprintf(stderr, "basalt template: --var %s: expected KEY=JSON%s%s\n", vars.items[i], eq ? ", " : "",
                    eq ? jerr.text : "");
            json_decref(extra);
            return 2;
        }
        char *key = strndup(vars.items[i], (size_t)(eq - vars.items[i]));
        json_object_set_new(extra, key, v);
        free(key);
    }
    bs_error err = {0};
    json_t *messages = NULL, *tools = NULL;
    chat_template *t = NULL;
    char *source = NULL, *out = NULL;
    size_t len = 0;
    int status = 0;
    bs_status s = (messages = load_json("--messages", messages_path, &err)) ? BS_OK : BS_EFORMAT;
    if (s == BS_OK && tools_path) s = (tools = load_json("--tools", tools_path, &err)) ? BS_OK : BS_EFORMAT;
    if (s == BS_OK) {
        if (is_model(path)) {
            s = chat_template_from_model(path, name, &t, &err);
        } else {
            size_t n;
            s = bs_file_read(path, &source, &n, &err);
            if (s == BS_OK) s = chat_template_open(source, "", "", &t, &err);
        }
    }
    if (s == BS_OK) {
        chat_template_pin_clock(t, (time_t)now);
        s = chat_template_render(t, messages, tools, add_generation_prompt, extra, &out, &len, &err);
    }
    if (s != BS_OK) status = cli_report("template", &err);
    else fwrite(out, 1, len, stdout);
    free(out);
    free(source);
    chat_template_close(t);
    json_decref(messages);
    json_decref(tools);
    json_decref(extra);
    return status;
}
