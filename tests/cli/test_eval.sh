#!/bin/sh
# `basalt eval` compares a tiny model with a LoRA adapter tuned on the same
# pairs (cat -> dog ...): both rows in the --json report, counts that add up,
# a binary grader's mean equal to its pass rate, and the tuned adapter
# passing more of the frozen set than its base; usage errors exit 2.
. tests/support/lib.sh

if [ ! -x "$BIN" ]; then echo "SKIP eval: $BIN not built"; exit 0; fi
"$BIN" eval --data x.jsonl > /dev/null 2> "$tmp/e"; rc=$?
check missing_model sh -c "[ $rc = 2 ] && grep -q -- '--model is required' '$tmp/e'"
"$BIN" eval --help > "$tmp/h" 2>&1
check help sh -c "grep -q 'usage: basalt eval' '$tmp/h' && grep -q -- --samples '$tmp/h'"

if ! "$PY" -c 'import torch, numpy' > /dev/null 2>&1; then
    echo "SKIP eval_models: PyTorch/numpy not importable by $PY"
    exit 0
fi
"$PY" -c 'import sys; sys.path[:0] = ["tests/server", "tests/oracle"]
import serve_client; serve_client.make_model(sys.argv[1])' "$tmp/tiny" || { fail model "make_model failed"; exit 0; }
for pair in cat:dog sun:moon red:blue owl:fox; do
    printf '{"messages":[{"role":"user","content":"%s"},{"role":"assistant","content":"%s"}]}\n' "${pair%%:*}" "${pair#*:}"
done > "$tmp/train.jsonl"
for pair in cat:dog sun:moon red:blue owl:fox; do
    printf '{"messages":[{"role":"user","content":"%s"}],"answer":"%s"}\n' "${pair%%:*}" "${pair#*:}"
done > "$tmp/eval.jsonl"
"$BIN" tune --model "$tmp/tiny" --train "$tmp/train.jsonl" --epochs 30 --batch-size 4 --lr 1e-2 --lora-rank 8 \
    --seed 3 --threads 1 --out "$tmp/lora" > /dev/null 2>&1 || { fail tune "basalt tune failed"; exit 0; }
printf '[{"type":"string_check","name":"exact","input":"{{sample.output_text}}","reference":"{{item.answer}}","operation":"like"}]\n' > "$tmp/g.json"

"$BIN" eval --model "$tmp/tiny" --model "$tmp/lora@$tmp/tiny" --data "$tmp/eval.jsonl" --grader "$tmp/g.json" \
    --max-tokens 4 --threads 1 --json > "$tmp/out.json" 2> "$tmp/e"; rc=$?
check eval_ok sh -c "[ $rc = 0 ]"
check eval_values "$PY" - "$tmp/out.json" "$tmp" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))["models"]
base, tuned = m
ok = [x["model"] for x in m] == [sys.argv[2] + "/tiny", sys.argv[2] + "/lora@" + sys.argv[2] + "/tiny"]
for x in m:
    c = x["criteria"][0]
    ok &= x["samples"] == 4 and x["errored"] == 0 and x["passed"] + x["failed"] == 4
    ok &= c["name"] == "exact" and c["passed"] == x["passed"] and abs(c["mean_score"] - x["passed"] / 4) < 1e-9
    ok &= abs(x["pass_rate"] - x["passed"] / 4) < 1e-9 and abs(x["mean_score"] - c["mean_score"]) < 1e-9
ok &= tuned["passed"] > base["passed"]
sys.exit(0 if ok else 1)
PYEOF

"$BIN" eval --model "$tmp/tiny" --model "$tmp/lora@$tmp/tiny" --data "$tmp/eval.jsonl" --grader "$tmp/g.json" \
    --max-tokens 4 --threads 1 --samples 2 > "$tmp/table" 2> "$tmp/e"
check table sh -c "head -1 '$tmp/table' | grep -q 'pass rate' && [ \$(wc -l < '$tmp/table') = 3 ]"

printf '{"type":"string_check","name":"x","input":"a","reference":"b","operation":"equals"}\n' > "$tmp/bad.json"
"$BIN" eval --model "$tmp/tiny" --data "$tmp/eval.jsonl" --grader "$tmp/bad.json" > /dev/null 2> "$tmp/e"; rc=$?
check bad_grader sh -c "[ $rc = 1 ] && grep -q 'bad.json\[0\].operation' '$tmp/e'"
