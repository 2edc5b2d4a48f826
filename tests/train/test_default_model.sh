#!/bin/sh
# The embedded default model's build, end to end on its tiny variant (a few
# seconds): `basalt build-default --tiny` writes an ordinary Hugging Face
# directory into DATA/models/basalt-default, bit-identical when rebuilt with
# the same threads, reused when up to date; its tokenizer round-trips; it
# learned (its loss fell, and asked who it is through `basalt serve`'s
# normal chat path it names basalt, which no untrained model does);
# `basalt serve` without --model falls back to the random demo while no
# full default model is built.  Uses $BASALT_BIN.
. tests/support/lib.sh

if [ ! -x "$BIN" ]; then echo "SKIP default_model: $BIN not built"; exit 0; fi
data="$tmp/data"
dir="$data/models/basalt-default"

# ---- build: an HF directory with a build record, and a per-family report
"$BIN" build-default --tiny --data "$data" --threads 1 > "$tmp/build.out" 2> "$tmp/build.err"; rc=$?
check build_ok sh -c "[ $rc = 0 ]"
if [ "$rc" != 0 ]; then tail -5 "$tmp/build.err"; exit 1; fi
for f in config.json model.safetensors tokenizer.json tokenizer_config.json generation_config.json \
         basalt_build.json corpus/train.jsonl corpus/eval.jsonl; do
    check "file_$f" test -s "$dir/$f"
done
check no_leftovers sh -c "[ ! -e '$dir.partial' ] && [ ! -e '$dir/init' ]"
check report_lists_families sh -c "grep -q 'arithmetic' '$tmp/build.out' && grep -q 'extract_json' '$tmp/build.out'"
check build_record "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["complete"] and j["fingerprint"].startswith("basalt-default recipe") and j["steps_done"] == j["total_steps"] else 1)' "$dir/basalt_build.json"

# It learned: the loss fell far below a uniform guess over the vocabulary (ln 515 = 6.2).
check loss_fell "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["final_train_loss"] < 2.5 else 1)' "$dir/basalt_build.json"

# ---- cached: an up-to-date build is kept; the same config rebuilds the same bytes
"$BIN" build-default --tiny --data "$data" > /dev/null 2> "$tmp/again.err"
check reused grep -q 'up to date' "$tmp/again.err"
"$BIN" build-default --tiny --out "$tmp/second" --threads 1 > /dev/null 2>&1
check deterministic_weights cmp -s "$dir/model.safetensors" "$tmp/second/model.safetensors"
check deterministic_tokenizer cmp -s "$dir/tokenizer.json" "$tmp/second/tokenizer.json"
check deterministic_corpus cmp -s "$dir/corpus/train.jsonl" "$tmp/second/corpus/train.jsonl"

# ---- the tokenizer round-trips through the ordinary HF loader
text='Extract the name and age as JSON: Zoë is 30 years old. {"a": [1, 2]}'
ids=$("$BIN" tokenize "$dir" --text "$text")
back=$("$BIN" detokenize "$dir" --ids "$ids")
check tokenizer_roundtrip [ "$back" = "$text" ]
n_ids=$(echo "$ids" | wc -w)
check tokenizer_merges sh -c "[ $n_ids -lt ${#text} ]"
special=$("$BIN" tokenize "$dir" --special --text "<|im_start|>user")
check special_tokens sh -c "[ \$(echo '$special' | wc -w) = 2 ]"

# ---- chat through `basalt serve`, the model's own template and tokenizer
start_server() { # log file, serve args...
    log=$1; shift
    "$BIN" serve --port 0 --threads 1 --data "$data" "$@" > "$log" 2>&1 &
    serve=$!
    url=
    for _ in $(seq 100); do
        url=$(sed -n 's/.*listening on \(http:[0-9.:/]*\).*/\1/p' "$log" | head -1)
        [ -n "$url" ] && return 0
        kill -0 "$serve" 2>/dev/null || break
        sleep 0.1
    done
    fail serve_start "$(tail -3 "$log")"
    return 1
}
stop_server() { kill "$serve" && wait "$serve" 2>/dev/null; serve=; }

if command -v curl > /dev/null && start_server "$tmp/serve.log" --model "basalt-default=$dir"; then
    curl -s "$url/v1/chat/completions" -H 'content-type: application/json' \
        -d '{"model":"basalt-default","messages":[{"role":"user","content":"Who are you?"}],"temperature":0,"max_tokens":40}' \
        > "$tmp/chat.json"
    check chat_returns_text "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); c=j["choices"][0]["message"]["content"]; sys.exit(0 if isinstance(c, str) and c.strip() else 1)' "$tmp/chat.json"
    check chat_says_basalt grep -q 'basalt' "$tmp/chat.json"
    stop_server
    # Only a complete build of the shipped config is picked up without --model.
    if start_server "$tmp/serve2.log"; then
        curl -s "$url/v1/models" > "$tmp/models.json"
        check no_model_falls_back grep -q 'basalt-demo-random' "$tmp/models.json"
        check no_model_says_how grep -q 'basalt build-default' "$tmp/serve2.log"
        stop_server
    fi
else
    echo "SKIP default_model_chat: curl not installed or the server did not start"
fi
