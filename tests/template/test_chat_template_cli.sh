#!/bin/sh
# `basalt template` against the jinja2 oracle through the CLI: output bytes,
# exit statuses, one-line errors carrying the template's own message.
. tests/support/lib.sh
SHARED=${BASALT_SHARED:-../shared}
ORACLE=tests/oracle/render_template.py

cat > "$tmp/messages.json" <<'JSON'
[{"role": "system", "content": "Be brief."},
 {"role": "user", "content": "Grüße, 日本語, emoji 🦙"},
 {"role": "assistant", "content": "", "tool_calls": [{"id": "call12345", "type": "function",
   "function": {"name": "lookup", "arguments": {"q": "ü"}}}]},
 {"role": "tool", "tool_call_id": "call12345", "content": "found"}]
JSON
cat > "$tmp/tools.json" <<'JSON'
[{"type": "function", "function": {"name": "lookup", "description": "Look it up.",
  "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": "query"}}, "required": ["q"]}}}]
JSON
printf '[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]' > "$tmp/bad_roles.json"

# same_as_oracle NAME TEMPLATE ARGS... : basalt and jinja2 print identical bytes
same_as_oracle() {
    name=$1; tmpl=$2; shift 2
    "$BIN" template "$tmpl" "$@" > "$tmp/ours" 2> "$tmp/err"; rc=$?
    "$PY" "$ORACLE" "$tmpl" "$@" > "$tmp/theirs" 2> /dev/null
    if [ $rc = 0 ] && cmp -s "$tmp/ours" "$tmp/theirs"; then pass "$name"; else fail "$name" "rc=$rc $(head -c 200 "$tmp/err")"; fi
}

# --- templates of our own (always available)
printf 'x' > "$tmp/x.jinja"
"$BIN" template "$tmp/x.jinja" --messages "$tmp/messages.json" > "$tmp/out"
check no_newline_added sh -c "[ \$(wc -c < '$tmp/out') = 1 ]"
same_as_oracle own_chatml tests/template/templates/chatml_smollm2.jinja --messages "$tmp/bad_roles.json" --add-generation-prompt
same_as_oracle own_features tests/template/templates/features.jinja --messages "$tmp/messages.json" --var x=1
same_as_oracle own_mistral_tools tests/template/templates/mistral_v03.jinja --messages "$tmp/messages.json" \
    --tools "$tmp/tools.json" --var 'bos_token="<s>"' --var 'eos_token="</s>"'

mkdir -p "$tmp/hfmodel"
printf '{"bos_token": {"content": "<B>"}, "eos_token": "<E>", "chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}' \
    > "$tmp/hfmodel/tokenizer_config.json"
out=$("$BIN" template "$tmp/hfmodel" --messages "$tmp/bad_roles.json")
check hf_dir_bos_eos [ "$out" = "<B>a<E>" ]

"$BIN" template "$tmp/x.jinja" > /dev/null 2> "$tmp/e"; rc=$?
check missing_messages sh -c "[ $rc = 2 ] && grep -q -- '--messages is required' '$tmp/e'"
"$BIN" template "$tmp/x.jinja" --messages "$tmp/messages.json" --var 'k=not json' > /dev/null 2> "$tmp/e"; rc=$?
check bad_var sh -c "[ $rc = 2 ] && grep -q 'expected KEY=JSON' '$tmp/e'"
printf '{%% if %%}' > "$tmp/broken.jinja"
"$BIN" template "$tmp/broken.jinja" --messages "$tmp/messages.json" > /dev/null 2> "$tmp/e"; rc=$?
check syntax_error_line_col sh -c "[ $rc = 1 ] && grep -q 'chat_template:1:' '$tmp/e' && [ \$(wc -l < '$tmp/e') = 1 ]"
"$BIN" template --help > "$tmp/h" 2>&1
check help_flags sh -c "grep -q 'usage: basalt template' '$tmp/h' && grep -q -- --add-generation-prompt '$tmp/h' && grep -q -- --var '$tmp/h'"

# --- real templates (skip without ../shared)
T="$SHARED/fixtures/templates"
if [ -d "$T" ]; then
    same_as_oracle qwen3_tools_no_thinking "$T/Qwen-Qwen3-0.6B.jinja" --messages "$tmp/messages.json" --tools "$tmp/tools.json" \
        --add-generation-prompt --var enable_thinking=false
    same_as_oracle llama32_pinned_clock "$T/meta-llama-Llama-3.2-3B-Instruct.jinja" --messages "$tmp/messages.json" \
        --tools "$tmp/tools.json" --now 1700000000 --var 'bos_token="<|begin_of_text|>"'
    same_as_oracle hermes_tools "$T/NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja" --messages "$tmp/messages.json" \
        --tools "$tmp/tools.json" --add-generation-prompt
    "$BIN" template "$T/mistralai-Mistral-Nemo-Instruct-2407.jinja" --messages "$tmp/bad_roles.json" > /dev/null 2> "$tmp/e"; rc=$?
    "$PY" "$ORACLE" "$T/mistralai-Mistral-Nemo-Instruct-2407.jinja" --messages "$tmp/bad_roles.json" 2> "$tmp/oe" > /dev/null
    msg=$(sed 's/^error: //' "$tmp/oe")
    check raise_exception_message sh -c "[ $rc = 1 ] && [ -n \"\$1\" ] && grep -qF -- \"\$1\" '$tmp/e' && [ \$(wc -l < '$tmp/e') = 1 ]" _ "$msg"
else
    echo "SKIP real_templates_cli: $SHARED/fixtures/templates absent"
fi
