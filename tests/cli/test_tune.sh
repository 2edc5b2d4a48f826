#!/bin/sh
# `basalt tune` on the tiny chat model of tests/server/serve_client.py: a
# LoRA run (plain progress lines when stderr is no TTY, validation loss, a
# summary, a PEFT adapter that `basalt serve --lora` answers with what it
# learned), a full run (a Hugging Face directory that serves the same way),
# and the errors: missing flags (usage, 2) and bad data (every bad line
# numbered, 1, nothing written), and --method rft (progress with the reward,
# the adapter, its errors).  Skips without PyTorch.
. tests/support/lib.sh

check() { # name, condition-command...
    name=$1; shift
    if "$@"; then pass "$name"; else fail "$name" "$* ($(tail -n 5 "$tmp/e" 2>/dev/null))"; fi
}

"$BIN" tune --help > "$tmp/h" 2>&1
check help_tune sh -c "grep -q 'usage: basalt tune' '$tmp/h' && grep -q -- --lora-rank '$tmp/h' && grep -q -- --full '$tmp/h' && grep -q -- --max-length '$tmp/h'"
"$BIN" tune --train x.jsonl > /dev/null 2> "$tmp/e"; rc=$?
check missing_model sh -c "[ $rc = 2 ] && grep -q -- '--model is required' '$tmp/e'"

if ! "$PY" -c 'import torch, numpy' > /dev/null 2>&1; then
    echo "SKIP tune_models: PyTorch/numpy not importable by $PY"
    exit 0
fi
"$PY" -c 'import sys; sys.path[:0] = ["tests/server", "tests/oracle"]
import serve_client; serve_client.make_model(sys.argv[1])' "$tmp/tiny" || { fail model "make_model failed"; exit 0; }
for pair in cat:dog sun:moon red:blue owl:fox; do
    printf '{"messages":[{"role":"user","content":"%s"},{"role":"assistant","content":"%s"}]}\n' "${pair%%:*}" "${pair#*:}"
done > "$tmp/train.jsonl"
head -2 "$tmp/train.jsonl" > "$tmp/valid.jsonl"

# ---- bad data: exit 1, every bad line listed, nothing written
printf '%s\n' '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}' 'nope' \
    '{"messages":[{"role":"assistant","content":""}]}' > "$tmp/bad.jsonl"
"$BIN" tune --model "$tmp/tiny" --train "$tmp/bad.jsonl" --out "$tmp/bad" > /dev/null 2> "$tmp/e"; rc=$?
check bad_data sh -c "[ $rc = 1 ] && grep -q '^line 2:' '$tmp/e' && grep -q '^line 3:' '$tmp/e' && [ ! -e '$tmp/bad' ]"

# ---- LoRA
"$BIN" tune --model "$tmp/tiny" --train "$tmp/train.jsonl" --valid "$tmp/valid.jsonl" --epochs 30 --batch-size 4 \
    --lr 1e-2 --lora-rank 8 --seed 3 --threads 1 --out "$tmp/lora" > "$tmp/o" 2> "$tmp/e"; rc=$?
check lora_ok sh -c "[ $rc = 0 ] && [ -s '$tmp/lora/adapter_model.safetensors' ] && grep -q '\"r\": 8' '$tmp/lora/adapter_config.json'"
check lora_progress sh -c "grep -q '^step 30/30 epoch 30/30 loss' '$tmp/e' && grep -q 'tok/s ETA' '$tmp/e' && ! grep -q \"\$(printf '\\r')\" '$tmp/e'"
check lora_summary sh -c "grep -q 'LoRA rank 8, alpha 16' '$tmp/e' && grep -q 'basalt tune: 30 steps' '$tmp/e' && grep -q 'validation loss' '$tmp/e' && grep -q 'wrote the adapter' '$tmp/e'"
loss_first=$(sed -n 's/^step 1\/30 .* loss \([0-9.]*\).*/\1/p' "$tmp/e")
loss_last=$(sed -n 's/^step 30\/30 .* loss \([0-9.]*\).*/\1/p' "$tmp/e")
check lora_loss_falls "$PY" -c "import sys; sys.exit(0 if $loss_last < 0.1 * $loss_first else 1)"

# ---- full fine-tuning: a Hugging Face directory
"$BIN" tune --model "$tmp/tiny" --train "$tmp/train.jsonl" --epochs 30 --batch-size 4 --lr 3e-3 --full \
    --threads 1 --out "$tmp/full" > "$tmp/o" 2> "$tmp/e"; rc=$?
check full_ok sh -c "[ $rc = 0 ] && [ -s '$tmp/full/model.safetensors' ] && cmp -s '$tmp/tiny/config.json' '$tmp/full/config.json' && cmp -s '$tmp/tiny/tokenizer.json' '$tmp/full/tokenizer.json' && grep -q 'wrote the model' '$tmp/e'"

# ---- reinforcement fine-tuning: plumbing (tests/train/test_rft.c shows the
# reward rising); this model answers "t..." to everything, so a grader for
# that scores 1 and the progress lines say so
for q in cat sun red owl; do printf '{"messages":[{"role":"user","content":"%s"}],"reference_answer":"x"}\n' "$q"; done > "$tmp/prompts.jsonl"
printf '%s\n' '{"type":"regex","name":"tee","pattern":"^t"}' > "$tmp/grader.json"
"$BIN" tune --method rft --model "$tmp/tiny" --train "$tmp/prompts.jsonl" --grader "$tmp/grader.json" --epochs 3 \
    --batch-size 2 --group-size 4 --max-completion-tokens 2 --lora-rank 8 --seed 5 --threads 1 \
    --out "$tmp/rft" > "$tmp/o" 2> "$tmp/e"; rc=$?
check rft_ok sh -c "[ $rc = 0 ] && [ -s '$tmp/rft/adapter_model.safetensors' ] && grep -q 'regex grader \"tee\"' '$tmp/e' && grep -q '^step 6/6 epoch 3/3 reward 1.000 std 0.000 zero-std 1.00' '$tmp/e' && grep -q 'wrote the adapter' '$tmp/e'"
"$BIN" tune --method rft --model "$tmp/tiny" --train "$tmp/prompts.jsonl" > /dev/null 2> "$tmp/e"; rc=$?
check rft_needs_grader sh -c "[ $rc = 2 ] && grep -q 'needs --grader' '$tmp/e'"
printf '%s\n' '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}' > "$tmp/answered.jsonl"
"$BIN" tune --method rft --model "$tmp/tiny" --train "$tmp/answered.jsonl" --grader "$tmp/grader.json" --out "$tmp/no" > /dev/null 2> "$tmp/e"; rc=$?
check rft_bad_data sh -c "[ $rc = 1 ] && grep -q '^line 1: the last message must be a user turn' '$tmp/e' && [ ! -e '$tmp/no' ]"

# ---- both answer with what they learned
"$BIN" serve --port 0 --threads 1 --data "$tmp/data" --model "tiny=$tmp/tiny" --model "full=$tmp/full" \
    --lora "pets=$tmp/lora@tiny" > "$tmp/serve.log" 2>&1 &
serve=$!
url=
for _ in $(seq 100); do
    url=$(sed -n 's/.*listening on \(http:[0-9.:/]*\).*/\1/p' "$tmp/serve.log" | head -1)
    [ -n "$url" ] && break
    sleep 0.1
done
answers() { # model -> 1 when every question gets its answer
    for pair in cat:dog sun:moon red:blue owl:fox; do
        curl -s "$url/v1/chat/completions" -H 'Content-Type: application/json' \
            -d '{"model":"'"$1"'","messages":[{"role":"user","content":"'"${pair%%:*}"'"}],"temperature":0,"max_tokens":5}' |
            "$PY" -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["choices"][0]["message"]["content"].lstrip().startswith(sys.argv[1]) else 1)' "${pair#*:}" || return 1
    done
}
check serve_lora answers pets
check serve_full answers full
kill "$serve" && wait "$serve" 2>/dev/null
