#!/bin/sh
# The Batch API under API keys: a real `basalt serve` (the random demo
# model) with keys.  Key A has an owner, so its tenant differs from its id:
# the worker's internal requests must act as the key (x-basalt-tenant names
# the key id), not the tenant.  A's batch completes, its lines count in A's
# usage, a key of the same owner sees it, key B gets 404 on the batch and
# its output file, and a forged internal header is refused.
. tests/support/lib.sh

CHECK_BODY=600

if [ ! -x "$BIN" ]; then echo "SKIP batch_keys: $BIN not built"; exit 0; fi
if ! command -v curl > /dev/null; then echo "SKIP batch_keys: curl not installed"; exit 0; fi
data="$tmp/data"
model=basalt-demo-random

admin=$("$BIN" keys create --name admin --scopes admin --data "$data" | head -1)
start_serve "$tmp/serve.log" --port 0 --threads 1 --data "$data"

scopes='"scopes":["inference","files"]'
keyA=$(mkkey A ",\"owner\":\"team-a\",$scopes")
keyA2=$(mkkey A2 ",\"owner\":\"team-a\",$scopes")
keyB=$(mkkey B ",\"owner\":\"team-b\",$scopes")
idA=$(cat "$tmp/id_A")

n=3
for i in $(seq $n); do
    printf '{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"%s","messages":[{"role":"user","content":"line %d"}],"max_tokens":3}}\n' \
        "$i" "$model" "$i"
done > "$tmp/in.jsonl"
req "$keyA" -F purpose=batch -F "file=@$tmp/in.jsonl" "$url/v1/files"
check upload_as_a status_is 200
input=$(json_get 'j["id"]')
req "$keyA" -H 'Content-Type: application/json' "$url/v1/batches" \
    -d "{\"input_file_id\":\"$input\",\"endpoint\":\"/v1/chat/completions\",\"completion_window\":\"24h\"}"
check create_as_a status_is 200
batch=$(json_get 'j["id"]')
for _ in $(seq 600); do
    req "$keyA" "$url/v1/batches/$batch"
    json_ok "j['status'] in ('completed', 'failed', 'cancelled', 'expired')" && break
    sleep 0.1
done
check batch_completed_as_key json_ok "j['status'] == 'completed' and j['request_counts'] == {'total': $n, 'completed': $n, 'failed': 0}"
output=$(json_get 'j["output_file_id"]')
prompt=$(json_get 'j["usage"]["input_tokens"]')
completion=$(json_get 'j["usage"]["output_tokens"]')

# The lines were A's requests: A's usage counts every one of them.
req "$admin" "$url/v1/admin/usage?group_by=key&key_id=$idA"
check lines_in_a_usage json_ok "len(j['data']) == 1 and j['data'][0]['key_id'] == '$idA' and j['data'][0]['requests'] == $n and j['data'][0]['errors'] == 0 and j['data'][0]['prompt_tokens'] == $prompt and j['data'][0]['completion_tokens'] == $completion"

# Tenancy: the same owner sees the batch; another owner gets the 404 of an unknown id.
req "$keyA2" "$url/v1/batches/$batch"
check same_owner_sees_batch json_ok "j['id'] == '$batch'"
req "$keyB" "$url/v1/batches/$batch"
check other_tenant_batch_404 status_is 404
req "$keyB" -X POST "$url/v1/batches/$batch/cancel"
check other_tenant_cancel_404 status_is 404
req "$keyB" "$url/v1/batches"
check other_tenant_batch_list_empty json_ok "j['data'] == []"
req "$keyB" "$url/v1/files/$output"
check other_tenant_output_404 status_is 404
req "$keyB" "$url/v1/files/$output/content"
check other_tenant_output_content_404 status_is 404
req "$keyA" "$url/v1/files/$output/content"
check owner_reads_output sh -c "[ \"\$(cat '$tmp/status')\" = 200 ] && [ \"\$(wc -l < '$tmp/body')\" = $n ]"

# The internal headers from outside the process: a guessed token is not the
# process token, so the request is nobody's.
forged() { # extra curl args...
    req '' "$url/v1/chat/completions" -H 'Content-Type: application/json' -H "x-basalt-tenant: $idA" \
        -H 'x-basalt-internal-kind: batch' "$@" \
        -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}"
}
forged -H "x-basalt-internal: $(printf '%064d' 0)"
check forged_internal_401 json_ok "j['error']['code'] == 'invalid_api_key'"
check forged_internal_status status_is 401
forged -H 'x-basalt-internal;'
check empty_internal_401 status_is 401
forged -H "x-basalt-internal: $(printf '%064d' 0)" -H "Authorization: Bearer $keyB"
check forged_with_other_key_is_that_key sh -c "[ \"\$(cat '$tmp/status')\" = 200 ]"
req "$admin" "$url/v1/admin/usage?group_by=key&key_id=$idA"
check forged_not_counted_for_a json_ok "j['data'][0]['requests'] == $n"
