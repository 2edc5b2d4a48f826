#!/bin/sh
# API keys, scopes, tenancy and limits end to end: a real `basalt serve`
# (the random demo model) with an admin key made offline by the CLI, keys
# made through the admin API, 401/403 for every kind of bad key, tenant
# isolation of files and fine-tuning jobs, 429 with the exact x-ratelimit-*
# headers, and 1000 parallel requests against one key's RPM and TPM: the
# admitted count is exactly the RPM, the tokens never exceed the TPM, and
# /v1/admin/usage equals the sum of the usage the 200s reported.  Last, a
# model's max_concurrent on a slow mock upstream: one of two concurrent
# requests refused, the slot free again after completion and disconnect.
. tests/support/lib.sh

matches() { expr "$1" : "$2" > /dev/null; }
CHECK_BODY=400

if [ ! -x "$BIN" ]; then echo "SKIP governance: $BIN not built"; exit 0; fi
if ! command -v curl > /dev/null; then echo "SKIP governance: curl not installed"; exit 0; fi
data="$tmp/data"
model=basalt-demo-random

# The admin key, made before the server exists.
admin=$("$BIN" keys create --name admin --scopes admin --data "$data" | head -1)
check cli_create_secret_shape matches "$admin" 'sk-basalt-[0-9a-f]\{12\}-[0-9A-Za-z]\{32\}$'
"$BIN" keys list --data "$data" > "$tmp/list"
check cli_list_no_secret sh -c "grep -q '\"name\":\"admin\"' '$tmp/list' && ! grep -q '$admin' '$tmp/list'"

start_serve "$tmp/serve.log" --port 0 --threads 1 --data "$data"

err_is() { status_is "$1" && json_ok "j['error']['code'] == '$2'"; }
chat() { # key: one chat completion of the demo model
    req "$1" "$url/v1/chat/completions" -H 'Content-Type: application/json' \
        -d "{\"model\":\"${2:-$model}\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}"
}

grep -q 'API keys: 1 configured' "$tmp/serve.log" && pass start_says_keys || fail start_says_keys "$(head -5 "$tmp/serve.log")"
req '' "$url/health"
check health_is_public status_is 200

# ---- 401: missing, malformed, unknown, revoked, expired
req '' "$url/v1/models"
check no_key_401 err_is 401 invalid_api_key
check no_key_type json_ok "j['error']['type'] == 'invalid_request_error' and 'missing' in j['error']['message']"
req 'not-a-key' "$url/v1/models"
check malformed_401 err_is 401 invalid_api_key
wrong=$(echo "$admin" | sed 's/.....$/AAAAA/')
req "$wrong" "$url/v1/models"
check wrong_secret_401 err_is 401 invalid_api_key
check wrong_secret_not_echoed sh -c "! grep -q '$wrong' '$tmp/body'"

userA=$(mkkey userA ',"scopes":["inference","files","fine-tune"]')
check create_key_once json_ok "j['secret'].startswith('sk-basalt-') and j['object'] == 'api_key' and j['scopes'] == ['inference','files','fine-tune']"
userB=$(mkkey userB ',"scopes":["inference","files","fine-tune"]')
idA=$(cat "$tmp/id_userA")
req "$admin" "$url/v1/admin/keys/$idA"
check get_key_no_secret json_ok "j['id'] == '$idA' and 'secret' not in j and j['name'] == 'userA'"
req "$admin" "$url/v1/admin/keys"
check list_keys json_ok "sorted(k['name'] for k in j['data']) == ['admin','userA','userB'] and all('secret' not in k for k in j['data'])"

doomed=$(mkkey doomed '')
req "$doomed" "$url/v1/models"
check before_revoke status_is 200
req "$admin" -X DELETE "$url/v1/admin/keys/$(cat "$tmp/id_doomed")"
check revoke json_ok "j['revoked_at'] > 0"
req "$doomed" "$url/v1/models"
check revoked_401 err_is 401 invalid_api_key
check revoked_says_so json_ok "'revoked' in j['error']['message']"

brief=$(mkkey brief ',"expires_in_s":1')
sleep 2
req "$brief" "$url/v1/models"
check expired_401 err_is 401 invalid_api_key
check expired_says_so json_ok "'expired' in j['error']['message']"

# ---- 403: scope, model allow-list
req "$userA" "$url/v1/admin/keys"
check no_admin_scope_403 err_is 403 permission_denied
narrow=$(mkkey narrow ',"models":["some-other-model"]')
chat "$narrow"
check model_not_allowed_403 err_is 403 model_not_allowed
check model_named json_ok "'$model' in j['error']['message'] and j['error']['param'] == 'model'"
printf '{"messages":[]}\n' > "$tmp/x.jsonl"
req "$narrow" -F purpose=fine-tune -F "file=@$tmp/x.jsonl" "$url/v1/files"
check files_scope_403 err_is 403 permission_denied
check refused_upload_not_stored sh -c "[ -z \"\$(ls '$data/files')\" ]"
req '' -F purpose=fine-tune -F "file=@$tmp/x.jsonl" "$url/v1/files"
check upload_without_key_401 err_is 401 invalid_api_key

# ---- update
req "$admin" -X POST "$url/v1/admin/keys/$(cat "$tmp/id_narrow")" -d '{"models":[]}'
check update_key json_ok "j['models'] == []"
chat "$narrow"
check update_takes_effect status_is 200
req "$admin" -X POST "$url/v1/admin/keys/$(cat "$tmp/id_narrow")" -d '{"rmp":3}'
check update_unknown_field status_is 400

# ---- tenancy: A's file and job are invisible to B
printf '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}\n' > "$tmp/train.jsonl"
req "$userA" -F purpose=fine-tune -F "file=@$tmp/train.jsonl" "$url/v1/files"
check tenant_upload status_is 200
fileA=$(json_get 'j["id"]')
req "$userB" "$url/v1/files/$fileA"
check other_tenant_get_404 status_is 404
req "$userB" "$url/v1/files/$fileA/content"
check other_tenant_content_404 status_is 404
req "$userB" -X DELETE "$url/v1/files/$fileA"
check other_tenant_delete_404 status_is 404
req "$userB" "$url/v1/files/$fileA"
check same_404_as_unknown json_ok "j['error'] == {'message': 'No such File object: $fileA', 'type': 'not_found_error', 'param': 'id', 'code': None}"
req "$userB" "$url/v1/files"
check other_tenant_list_empty json_ok "j['data'] == []"
req "$userA" "$url/v1/files"
check own_list json_ok "[f['id'] for f in j['data']] == ['$fileA']"
req "$userB" "$url/v1/fine_tuning/jobs" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$model\",\"training_file\":\"$fileA\"}"
check other_tenant_file_for_job json_ok "j['error']['code'] == 'invalid_file'"
req "$userA" "$url/v1/fine_tuning/jobs" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$model\",\"training_file\":\"$fileA\",\"hyperparameters\":{\"n_epochs\":1}}"
check tenant_job status_is 200
jobA=$(json_get 'j["id"]')
for path in "$jobA" "$jobA/events" "$jobA/checkpoints"; do
    req "$userB" "$url/v1/fine_tuning/jobs/$path"
    check "other_tenant_job_$(echo "$path" | tr / _ | sed 's/ftjob-[0-9a-f]*/job/')_404" status_is 404
done
req "$userB" -X POST "$url/v1/fine_tuning/jobs/$jobA/cancel"
check other_tenant_cancel_404 status_is 404
req "$userB" "$url/v1/fine_tuning/jobs"
check other_tenant_jobs_empty json_ok "j['data'] == []"
req "$userA" "$url/v1/fine_tuning/jobs"
check own_jobs json_ok "[x['id'] for x in j['data']] == ['$jobA']"
req "$userA" "$url/v1/fine_tuning/jobs/$jobA"
check own_job_get json_ok "j['id'] == '$jobA'"
# The fine-tuned model belongs to A: listed and usable for A, unknown to B.
for _ in $(seq 120); do
    req "$userA" "$url/v1/fine_tuning/jobs/$jobA"
    json_ok "j['status'] in ('succeeded', 'failed', 'cancelled')" && break
    sleep 0.5
done
check tenant_job_succeeded json_ok "j['status'] == 'succeeded'"
ftmodel=$(json_get 'j["fine_tuned_model"]')
req "$userA" "$url/v1/models"
check ft_model_listed_for_owner json_ok "'$ftmodel' in [m['id'] for m in j['data']]"
req "$userB" "$url/v1/models"
check ft_model_hidden_from_other json_ok "'$ftmodel' not in [m['id'] for m in j['data']] and '$model' in [m['id'] for m in j['data']]"
chat "$userB" "$ftmodel"
check ft_model_404_for_other err_is 404 model_not_found
req "$userB" "$url/v1/models/$ftmodel"
check ft_model_get_404_for_other status_is 404
chat "$userA" "$ftmodel"
check ft_model_usable_by_owner status_is 200

# ---- tenancy of evals: A's eval and its runs do not exist for B
evcfg='{"type":"custom","item_schema":{"type":"object","properties":{"q":{"type":"string"}}}}'
evsc='{"type":"string_check","name":"c","input":"{{sample.output_text}}","reference":"x","operation":"like"}'
req "$userA" "$url/v1/evals" -H 'Content-Type: application/json' \
    -d "{\"name\":\"a-eval\",\"data_source_config\":$evcfg,\"testing_criteria\":[$evsc]}"
check tenant_eval status_is 200
evalA=$(json_get 'j["id"]')
for path in "$evalA" "$evalA/runs"; do
    req "$userB" "$url/v1/evals/$path"
    check "other_tenant_eval_$(echo "$path" | tr / _ | sed 's/eval_[0-9a-zA-Z]*/eval/')_404" status_is 404
done
req "$userB" "$url/v1/evals/$evalA" -H 'Content-Type: application/json' -d '{"name":"taken"}'
check other_tenant_eval_update_404 status_is 404
req "$userB" -X DELETE "$url/v1/evals/$evalA"
check other_tenant_eval_delete_404 status_is 404
req "$userB" "$url/v1/evals"
check other_tenant_evals_empty json_ok "j['data'] == []"
req "$userA" "$url/v1/evals"
check own_evals json_ok "[e['id'] for e in j['data']] == ['$evalA'] and j['data'][0]['name'] == 'a-eval'"

# ---- 429 with the exact headers; a request alone over the limit is a 400
fresh_minute 40
limited=$(mkkey limited ',"rpm":2,"tpm":100000')
used=0
for i in 1 2; do
    chat "$limited"
    used=$((used + $(json_get 'j["usage"]["total_tokens"]')))
done
chat "$limited"
check rpm_429 err_is 429 rate_limit_exceeded
check rpm_429_type json_ok "j['error']['type'] == 'rate_limit_error'"
check h_limit_requests [ "$(header x-ratelimit-limit-requests)" = 2 ]
check h_remaining_requests [ "$(header x-ratelimit-remaining-requests)" = 0 ]
check h_limit_tokens [ "$(header x-ratelimit-limit-tokens)" = 100000 ]
check h_remaining_tokens [ "$(header x-ratelimit-remaining-tokens)" = $((100000 - used)) ]
reset=$(header x-ratelimit-reset-requests)
retry=$(header retry-after)
check h_reset_format matches "$reset" '[0-9.]*m\{0,1\}[0-9.]*s$'
check h_retry_after sh -c "[ '$retry' -ge 1 ] && [ '$retry' -le 60 ]"
check h_reset_tokens [ -n "$(header x-ratelimit-reset-tokens)" ]

small=$(mkkey small ',"tpm":100')
req "$small" "$url/v1/completions" -d "{\"model\":\"$model\",\"prompt\":\"hi\",\"max_tokens\":500}"
check alone_over_tpm_400 status_is 400
check alone_over_tpm_param json_ok "j['error']['param'] == 'max_tokens' and '100' in j['error']['message']"

# ---- 1000 parallel requests: exactly RPM admitted, tokens within TPM, exact accounting
fresh_minute 20
# The limiter's refusals are told from the scheduler's own 429 (queue full,
# after admission) by their message.
burst() { # key, n: prints the JSON summary of the 200s and the refusals
    "$PY" - "$url" "$1" "$2" "$model" <<'EOF'
import json, os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "support"))
from gwtest import parallel, req, url_port
port, key, n, model = url_port(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
body = {"model": model, "prompt": "hi", "max_tokens": 3}
res = parallel(n, lambda _: req(port, "POST", "/v1/completions", body, key, timeout=120)[::2])
ok = [j["usage"] for c, j in res if c == 200]
print(json.dumps({"ok": len(ok), "prompt": sum(u["prompt_tokens"] for u in ok),
                  "completion": sum(u["completion_tokens"] for u in ok),
                  "limited": sum(1 for c, j in res if c == 429 and j["error"]["message"].startswith("Rate limit")),
                  "other": sorted(set(c for c, j in res if c != 200 and not (c == 429 and
                                  j["error"]["message"].startswith("Rate limit"))))}))
EOF
}
rpmkey=$(mkkey rpmkey ',"rpm":137')
burst "$rpmkey" 1000 > "$tmp/body"
echo 200 > "$tmp/status"
check burst_rpm_exact json_ok "j['limited'] == 1000 - 137 and j['ok'] > 0 and j['other'] in ([], [429])"

tpmkey=$(mkkey tpmkey ',"tpm":3000')
burst "$tpmkey" 1000 > "$tmp/burst"
cp "$tmp/burst" "$tmp/body"
check burst_tpm_never_over json_ok "0 < j['prompt'] + j['completion'] <= 3000 and j['limited'] > 0 and j['other'] in ([], [429])"
ok=$(json_get 'j["ok"]'); prompt=$(json_get 'j["prompt"]'); completion=$(json_get 'j["completion"]')
req "$admin" "$url/v1/admin/usage?group_by=key&key_id=$(cat "$tmp/id_tpmkey")"
check usage_exact json_ok "len(j['data']) == 1 and j['data'][0]['prompt_tokens'] == $prompt and j['data'][0]['completion_tokens'] == $completion and j['data'][0]['requests'] - j['data'][0]['errors'] == $ok and j['data'][0]['requests'] == 1000"
req "$admin" "$url/v1/admin/usage?group_by=model&format=csv"
check usage_csv sh -c "[ \"\$(cat '$tmp/status')\" = 200 ] && head -1 '$tmp/body' | grep -q '^model,' && grep -q '^$model,' '$tmp/body'"
req "$admin" "$url/v1/admin/usage?group_by=nonsense"
check usage_bad_group status_is 400

# ---- audit: every admin action, with its actor
req "$admin" "$url/v1/admin/audit?limit=1000"
adminid=$(sed -n 's/.*"id":"\(key-[0-9a-f]*\)".*"name":"admin".*/\1/p; s/.*"name":"admin".*"id":"\(key-[0-9a-f]*\)".*/\1/p' "$tmp/list" | head -1)
check audit_actions json_ok "[e['action'] for e in j['data']].count('key.create') >= 9 and 'key.revoke' in [e['action'] for e in j['data']] and 'key.update' in [e['action'] for e in j['data']]"
check audit_actor json_ok "all(e['actor'] in ('', '$adminid') for e in j['data']) and any(e['actor'] == '$adminid' for e in j['data'])"

# ---- open mode: no keys, loopback only; a public address needs --insecure-open
stop_serve
timeout 30 "$BIN" serve --port 0 --threads 1 --host 0.0.0.0 --data "$tmp/open" > "$tmp/open.log" 2>&1
check public_without_keys_refused grep -q 'insecure-open' "$tmp/open.log"
"$BIN" serve --port 0 --threads 1 --data "$tmp/open" > "$tmp/open.log" 2>&1 &
serve=$!
for _ in $(seq 100); do grep -q 'listening on' "$tmp/open.log" && break; sleep 0.1; done
check open_loopback_says_so grep -q 'no API keys: open access, loopback only' "$tmp/open.log"

# ---- per-model max_concurrent (config models[].max_concurrent), across keys:
# with a slow upstream, of two concurrent requests one is served and one
# refused 429 with Retry-After; the slot is free again after completion and
# after a client disconnect.
MOCK=${BASALT_MOCK_UPSTREAM:-build/tests/gateway/mock_upstream}
if [ ! -x "$MOCK" ]; then echo "SKIP model_max_concurrent: $MOCK not built"; exit 0; fi
stop_serve
"$MOCK" --port 0 > "$tmp/mock.log" 2>&1 &
mock=$!
trap '[ -n "$serve" ] && kill "$serve" 2>/dev/null; kill "$mock" 2>/dev/null; rm -rf "$tmp"' EXIT
mport=$(log_wait "$tmp/mock.log" 's/^listening on \([0-9]*\).*/\1/p')
cat > "$tmp/conc.yaml" <<EOF
providers:
  - {name: mock, base_url: "http://127.0.0.1:$mport/v1"}
models:
  - {name: one-at-a-time, provider: mock, model: up, max_concurrent: 1}
EOF
start_serve "$tmp/conc.log" --config "$tmp/conc.yaml" --port 0 --threads 1 --data "$data"
slow() { curl -s -X POST "http://127.0.0.1:$mport/mock/faults" -d "{\"always\":{\"delay_ms\":$1}}" > /dev/null; }
conc_chat() { # key, curl args...: status on stdout, body in $tmp/conc_body
    k=$1; shift
    curl -s -o "$tmp/conc_body" -w '%{http_code}' -H "Authorization: Bearer $k" -H 'Content-Type: application/json' \
        -d '{"model":"one-at-a-time","messages":[{"role":"user","content":"hi"}],"max_tokens":2}' "$@" \
        "$url/v1/chat/completions"
}
slow 1500
conc_chat "$userA" > "$tmp/first_status" &
first=$!
sleep 0.4
# Another key: the model's limit spans keys.
chat "$userB" one-at-a-time
check model_conc_second_429 err_is 429 rate_limit_exceeded
check model_conc_says_model json_ok "\"the model's concurrent-requests limit of 1\" in j['error']['message']"
check model_conc_retry_after [ "$(header retry-after)" = 1 ]
wait "$first"
check model_conc_first_200 [ "$(cat "$tmp/first_status")" = 200 ]
slow 0
chat "$userB" one-at-a-time
check model_conc_free_after_completion status_is 200
# A client that gives up: its slot is released when the server notices.
slow 1500
conc_chat "$userA" --max-time 0.4 > /dev/null
slow 0
freed=
for _ in $(seq 50); do
    [ "$(conc_chat "$userB")" = 200 ] && { freed=1; break; }
    sleep 0.1
done
check model_conc_free_after_disconnect [ -n "$freed" ]
