#!/bin/sh
# `basalt serve --kv-cache-dtype`: f16 halves the KV cache and still serves
# chat (greedy output equal to f32's on the demo model for a short reply);
# q8_0 (about a quarter) serves chat too; a bad value is refused naming the
# flag.
. tests/support/lib.sh

"$BIN" serve --random --kv-cache-dtype f8 > "$tmp/bad.log" 2>&1
check bad_value_exit_2 [ $? = 2 ]
check bad_value_named grep -q -- "--kv-cache-dtype: KV cache dtype \"f8\": expected f32, f16 or q8_0" "$tmp/bad.log"

body='{"model":"basalt-demo-random","messages":[{"role":"user","content":"hello there"}],"max_tokens":12,"temperature":0}'
for dtype in f32 f16 q8_0; do
    start_serve "$tmp/$dtype.log" --random --port 0 --data "$tmp/data-$dtype" --kv-cache-dtype "$dtype"
    req '' "$url/v1/chat/completions" -H 'Content-Type: application/json' -d "$body"
    check "chat_$dtype" status_is 200
    json_get 'j["choices"][0]["message"]["content"]' > "$tmp/$dtype.out"
    check "content_$dtype" [ -s "$tmp/$dtype.out" ]
    stop_serve
done
check f16_same_greedy_reply cmp -s "$tmp/f32.out" "$tmp/f16.out"
