#!/bin/sh
# CLI tests: the stable interface of `basalt` (flags, output shapes, exit
# statuses, one-line errors).  Uses $BASALT_BIN (set by tests/run.sh).
. tests/support/lib.sh
SHARED=${BASALT_SHARED:-../shared}

# --- help: every command documents itself and every flag it accepts
"$BIN" --help > "$tmp/help" 2>&1; rc=$?
check help_lists_commands sh -c "[ $rc = 0 ] && grep -q tokenize '$tmp/help' && grep -q bench '$tmp/help' && grep -q generate '$tmp/help'"
for cmd in tokenize detokenize logits generate bench run; do
    "$BIN" $cmd --help > "$tmp/h_$cmd" 2>&1
    check "help_$cmd" grep -q "usage: basalt $cmd" "$tmp/h_$cmd"
done
check help_generate_flags sh -c "grep -q -- --temperature '$tmp/h_generate' && grep -q -- --top-p '$tmp/h_generate' && grep -q -- --seed '$tmp/h_generate' && grep -q -- '--ids' '$tmp/h_generate'"
check help_bench_flags sh -c "grep -q -- --prompt-tokens '$tmp/h_bench' && grep -q -- --gen-tokens '$tmp/h_bench' && grep -q -- --json '$tmp/h_bench'"

# --- usage errors exit 2 with a message naming the problem
"$BIN" frobnicate > /dev/null 2> "$tmp/e"; rc=$?
check unknown_command sh -c "[ $rc = 2 ] && grep -q \"unknown command 'frobnicate'\" '$tmp/e'"
"$BIN" logits "$tmp" --top x > /dev/null 2> "$tmp/e"; rc=$?
check bad_int_flag sh -c "[ $rc = 2 ] && grep -q -- '--top expects an integer' '$tmp/e'"
"$BIN" detokenize "$tmp" --ids "1 two" > /dev/null 2> "$tmp/e"; rc=$?
check bad_ids sh -c "[ $rc = 2 ] && grep -q 'not a token id' '$tmp/e'"
"$BIN" tokenize "$tmp/nope.gguf" --text hi > /dev/null 2> "$tmp/e"; rc=$?
check missing_model sh -c "[ $rc = 1 ] && grep -q 'nope.gguf' '$tmp/e' && [ \$(wc -l < '$tmp/e') = 1 ]"
printf 'GGUF\003\000\000\000' > "$tmp/trunc.gguf"
"$BIN" tokenize "$tmp/trunc.gguf" --text hi > /dev/null 2> "$tmp/e"; rc=$?
check truncated_gguf sh -c "[ $rc = 1 ] && grep -q 'trunc.gguf' '$tmp/e' && [ \$(wc -l < '$tmp/e') = 1 ]"

# --- the main job's --random mode (no build, no server) says plainly that it
# is random, and is reproducible by seed
"$BIN" run --random -n 16 --seed 7 > "$tmp/run1" 2> "$tmp/run_err"; rc=$?
"$BIN" run --random -n 16 --seed 7 > "$tmp/run2" 2> /dev/null
check run_says_random sh -c "[ $rc = 0 ] && grep -q 'RANDOM' '$tmp/run_err'"
check run_seeded_repeatable cmp -s "$tmp/run1" "$tmp/run2"
check run_prints_prompt grep -q '^Once upon a time' "$tmp/run1"

# --- tokenizer fixtures through the CLI (skip without ../shared)
if [ -f "$SHARED/fixtures/vocab/ggml-vocab-gpt-2.gguf" ]; then
    v="$SHARED/fixtures/vocab/ggml-vocab-gpt-2.gguf"
    out=$("$BIN" tokenize "$v" --text "Hello world")
    check tokenize_gpt2 [ "$out" = "15496 995" ]
    out=$("$BIN" detokenize "$v" --ids "15496 995")
    check detokenize_gpt2 [ "$out" = "Hello world" ]
    printf ' this is 🦙.cpp' > "$tmp/in.txt"
    a=$("$BIN" tokenize "$v" --file "$tmp/in.txt")
    b=$("$BIN" detokenize "$v" --ids "$a")
    check tokenize_file_roundtrip [ "$b" = " this is 🦙.cpp" ]
    spm="$SHARED/fixtures/vocab/ggml-vocab-llama-spm.gguf"
    out=$("$BIN" tokenize "$spm" --text "Hello world")
    check tokenize_spm_adds_bos [ "$out" = "1 15043 3186" ]
else
    echo "SKIP tokenize_fixtures: $SHARED/fixtures absent"
fi
