#!/bin/sh
# `basalt quantize` and `--quantize`: files that load, tokenize and compute
# like their source; one-line errors and exit statuses for bad input.  Uses
# the oracle's HF models (tests/oracle/make_model.py); skips without PyTorch.
. tests/support/lib.sh

one_line() { [ "$(wc -l < "$1")" = 1 ]; }

"$BIN" quantize --help > "$tmp/h" 2>&1
check help_quantize sh -c "grep -q 'usage: basalt quantize IN OUT.gguf TYPE' '$tmp/h' && grep -q -- --threads '$tmp/h'"
for cmd in generate bench logits; do
    "$BIN" $cmd --help > "$tmp/h" 2>&1
    check "help_${cmd}_quantize" grep -q -- --quantize "$tmp/h"
done

if ! "$PY" -c 'import torch, numpy' > /dev/null 2>&1; then
    echo "SKIP quantize_models: PyTorch/numpy not importable by $PY"
    exit 0
fi
"$PY" tests/oracle/make_model.py "$tmp" > /dev/null || { fail oracle "make_model.py failed"; exit 0; }
HF="$tmp/qwen2-hf-f32"

# --- writing: progress per tensor, then a file basalt loads
"$BIN" quantize "$HF" "$tmp/q.gguf" q8_0 --threads 2 > "$tmp/o" 2> "$tmp/e"; rc=$?
check quantize_ok sh -c "[ $rc = 0 ] && [ -s '$tmp/q.gguf' ] && grep -q 'blk.1.ffn_down.weight' '$tmp/e' && grep -q 'wrote' '$tmp/e'"

# --- the tokenizer travels: same ids from the GGUF as from the directory
same_tokens=1
for text in "Hello world" "  two  spaces" "Führer ½ 3333333" "line
break" "<|endoftext|>"; do
    a=$("$BIN" tokenize "$HF" --text "$text" --special 2>&1)
    b=$("$BIN" tokenize "$tmp/q.gguf" --text "$text" --special 2>&1)
    [ -n "$a" ] && [ "$a" = "$b" ] || { same_tokens=0; echo "  '$text': $a vs $b"; }
done
check tokenize_same sh -c "[ $same_tokens = 1 ]"

# --- --quantize q8_0 at load computes what the q8_0 GGUF computes
ids="1 50 200 3 99 7 256 12"
"$BIN" logits "$HF" --ids "$ids" --quantize q8_0 --threads 2 > "$tmp/l_load" 2>&1
"$BIN" logits "$tmp/q.gguf" --ids "$ids" --threads 2 > "$tmp/l_gguf" 2>&1
check load_quantize_matches_gguf sh -c "[ -s '$tmp/l_load' ] && cmp -s '$tmp/l_load' '$tmp/l_gguf'"
"$BIN" generate "$HF" --quantize q4_0 --prompt "Hi" -n 4 --seed 1 --ids > "$tmp/g" 2>&1; rc=$?
check generate_quantize sh -c "[ $rc = 0 ]"

# --- bad input: one line naming the problem, non-zero exit
"$BIN" quantize "$HF" "$tmp/x.gguf" q5_k > /dev/null 2> "$tmp/e"; rc=$?
check unknown_type sh -c "[ $rc = 2 ] && grep -q \"unknown quantization type 'q5_k'\" '$tmp/e' && [ ! -e '$tmp/x.gguf' ]"
check unknown_type_one_line one_line "$tmp/e"
"$BIN" quantize "$HF" "$tmp/no-such-dir/x.gguf" q8_0 > /dev/null 2> "$tmp/e"; rc=$?
check unwritable_out sh -c "[ $rc = 1 ] && grep -q 'no-such-dir/x.gguf' '$tmp/e'"
check unwritable_out_one_line one_line "$tmp/e"
"$BIN" quantize "$tmp/missing-model" "$tmp/y.gguf" q8_0 > /dev/null 2> "$tmp/e"; rc=$?
check missing_source sh -c "[ $rc = 1 ] && grep -q 'missing-model' '$tmp/e' && [ ! -e '$tmp/y.gguf' ]"
check missing_source_one_line one_line "$tmp/e"
mkdir "$tmp/broken" && cp "$HF/config.json" "$tmp/broken/" && head -c 100 "$HF/model.safetensors" > "$tmp/broken/model.safetensors"
"$BIN" quantize "$tmp/broken" "$tmp/z.gguf" q8_0 > /dev/null 2> "$tmp/e"; rc=$?
check broken_source sh -c "[ $rc = 1 ] && grep -q 'model.safetensors' '$tmp/e' && [ ! -e '$tmp/z.gguf' ]"
check broken_source_one_line one_line "$tmp/e"
"$BIN" quantize "$HF" "$tmp/w.gguf" > /dev/null 2> "$tmp/e"; rc=$?
check missing_type sh -c "[ $rc = 2 ]"
"$BIN" logits "$tmp/q.gguf" --ids "1 2" --quantize q4_0 > /dev/null 2> "$tmp/e"; rc=$?
check load_quantize_gguf_refused sh -c "[ $rc = 1 ] && grep -q 'quantize' '$tmp/e'"
check load_quantize_gguf_refused_one_line one_line "$tmp/e"
"$BIN" logits "$HF" --ids "1 2" --quantize q3 > /dev/null 2> "$tmp/e"; rc=$?
check load_quantize_bad_type sh -c "[ $rc = 2 ] && grep -q \"unknown quantization type 'q3'\" '$tmp/e'"
