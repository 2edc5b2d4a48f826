#!/bin/sh
# The Batch API end to end: a real `basalt serve` (the random demo model; no
# weights needed) on a free loopback port.  Validation failures with line
# numbers, a mixed chat + embeddings batch completing with exact counts and
# an error file, create-request refusals, cancel with partial output, list
# paging, and a restart mid-batch resuming without running a line twice.
# Uses $BASALT_BIN.
. tests/support/lib.sh

CHECK_BODY=600

if [ ! -x "$BIN" ]; then echo "SKIP batches: $BIN not built"; exit 0; fi
if ! command -v curl > /dev/null; then echo "SKIP batches: curl not installed"; exit 0; fi
data="$tmp/data"
model=basalt-demo-random

start() { start_serve "$tmp/serve.log" --port 0 --threads 1 --data "$data"; }

req() { # curl args...: body in $tmp/body, HTTP status in $tmp/status
    curl -s -o "$tmp/body" -w '%{http_code}' "$@" > "$tmp/status"
}

upload() { # file -> prints the file id
    req -F purpose=batch -F "file=@$1" "$url/v1/files"
    json_get 'j["id"]'
}
create() { # input file id [endpoint] -> the batch object in $tmp/body
    req -H 'Content-Type: application/json' "$url/v1/batches" \
        -d "{\"input_file_id\":\"$1\",\"endpoint\":\"${2:-/v1/chat/completions}\",\"completion_window\":\"24h\",\"metadata\":{\"suite\":\"batches\"}}"
}
# Poll GET /v1/batches/ID until the Python condition on j holds (60 s at most).
wait_for() { # id condition
    for _ in $(seq 600); do
        req "$url/v1/batches/$1"
        json_ok "$2" && return 0
        sleep 0.1
    done
    return 1
}
content() { # file id -> its bytes in $tmp/$1.jsonl
    curl -s -o "$tmp/$1.jsonl" "$url/v1/files/$1/content"
}
# A Python expression over the JSONL lines L of a file must be true.
lines_ok() { "$PY" -c 'import json,sys; L=[json.loads(x) for x in open(sys.argv[1]) if x.strip()]; sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"; }

chat_line() { # custom_id max_tokens
    printf '{"custom_id":"%s","method":"POST","url":"/v1/chat/completions","body":{"model":"%s","messages":[{"role":"user","content":"say %s"}],"max_tokens":%s}}\n' "$1" "$model" "$1" "$2"
}
emb_line() { # custom_id
    printf '{"custom_id":"%s","method":"POST","url":"/v1/embeddings","body":{"model":"%s","input":"text %s"}}\n' "$1" "$model" "$1"
}

start

# ---- validation: every bad line is reported with its line number
{
    for i in 1 2 3 4 5; do chat_line "chat-$i" 4; done
    emb_line emb-1
    echo
    emb_line emb-2
    printf '{"custom_id":"bad-url","method":"POST","url":"/v1/images/generations","body":{"model":"%s"}}\n' "$model"
    printf 'not json\n'
    chat_line chat-1 4
} > "$tmp/invalid.jsonl"
fid=$(upload "$tmp/invalid.jsonl")
create "$fid"
check create_status status_is 200
check create_object json_ok 'j["object"] == "batch" and j["id"].startswith("batch_") and j["status"] == "validating" and j["completion_window"] == "24h" and j["expires_at"] == j["created_at"] + 86400 and j["metadata"] == {"suite": "batches"} and j["output_file_id"] is None'
bid=$(json_get 'j["id"]')
check validation_failed wait_for "$bid" 'j["status"] == "failed"'
check validation_errors json_ok '[(e["line"], e["code"], e["param"]) for e in j["errors"]["data"]] == [(9, "invalid_url", "url"), (10, "invalid_json_line", None), (11, "duplicate_custom_id", "custom_id")] and "/v1/images/generations" in j["errors"]["data"][0]["message"]'
check validation_fields json_ok 'j["errors"]["object"] == "list" and isinstance(j["failed_at"], int) and j["in_progress_at"] is None and j["request_counts"]["total"] == 10 and j["output_file_id"] is None and j["error_file_id"] is None'

# ---- a valid file mixing chat and embeddings, plus a line the server refuses
{
    for i in 1 2 3 4 5; do chat_line "chat-$i" 4; done
    emb_line emb-1
    emb_line emb-2
    printf '{"custom_id":"nomodel","method":"POST","url":"/v1/chat/completions","body":{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}}\n'
} > "$tmp/valid.jsonl"
fid=$(upload "$tmp/valid.jsonl")
create "$fid"
bid=$(json_get 'j["id"]')
check batch_completed wait_for "$bid" 'j["status"] in ("completed", "failed")'
check batch_counts json_ok 'j["status"] == "completed" and j["request_counts"] == {"total": 8, "completed": 7, "failed": 1} and j["model"] == "'"$model"'"'
check batch_timestamps json_ok 'j["created_at"] <= j["in_progress_at"] <= j["finalizing_at"] <= j["completed_at"] and j["failed_at"] is None and j["cancelled_at"] is None'
out=$(json_get 'j["output_file_id"]')
errf=$(json_get 'j["error_file_id"]')
usage_total=$(json_get 'j["usage"]["total_tokens"]')
usage_in=$(json_get 'j["usage"]["input_tokens"]')
req "$url/v1/files/$out"
check output_file_object json_ok 'j["purpose"] == "batch_output" and j["filename"] == "'"$bid"'_output.jsonl" and j["status"] == "processed"'
content "$out"
check output_ids lines_ok "$tmp/$out.jsonl" 'sorted(l["custom_id"] for l in L) == sorted(["chat-1","chat-2","chat-3","chat-4","chat-5","emb-1","emb-2"]) and len(set(l["id"] for l in L)) == 7 and all(l["id"].startswith("batch_req_") and l["error"] is None for l in L)'
check output_chat_bodies lines_ok "$tmp/$out.jsonl" 'all(l["response"]["status_code"] == 200 and l["response"]["request_id"].startswith("req_") and l["response"]["body"]["object"] == "chat.completion" and l["response"]["body"]["usage"]["completion_tokens"] <= 4 and l["response"]["body"]["usage"]["prompt_tokens"] > 0 for l in L if l["custom_id"].startswith("chat"))'
check output_embedding_bodies lines_ok "$tmp/$out.jsonl" 'all(l["response"]["body"]["object"] == "list" and l["response"]["body"]["data"][0]["object"] == "embedding" and len(l["response"]["body"]["data"][0]["embedding"]) == 256 and l["response"]["body"]["usage"]["prompt_tokens"] > 0 for l in L if l["custom_id"].startswith("emb"))'
check output_usage_sums lines_ok "$tmp/$out.jsonl" 'sum(l["response"]["body"]["usage"]["total_tokens"] for l in L) == '"$usage_total"' and sum(l["response"]["body"]["usage"]["prompt_tokens"] for l in L) == '"$usage_in"
content "$errf"
check error_file lines_ok "$tmp/$errf.jsonl" 'len(L) == 1 and L[0]["custom_id"] == "nomodel" and L[0]["response"]["status_code"] == 404 and L[0]["error"]["code"] == "model_not_found" and "no-such-model" in L[0]["error"]["message"]'
check parts_removed [ -z "$(ls "$data/batches")" ]

# ---- create refusals
req -F purpose=fine-tune -F "file=@$tmp/valid.jsonl" "$url/v1/files"
ftid=$(json_get 'j["id"]')
create "$ftid"
check create_wrong_purpose json_ok 'j["error"]["param"] == "input_file_id" and "fine-tune" in j["error"]["message"]'
check create_wrong_purpose_400 status_is 400
create file-doesnotexist
check create_unknown_file status_is 404
req -H 'Content-Type: application/json' "$url/v1/batches" -d "{\"input_file_id\":\"$fid\",\"endpoint\":\"/v1/chat/completions\",\"completion_window\":\"1h\"}"
check create_bad_window json_ok 'j["error"]["param"] == "completion_window"'
create "$fid" /v1/moderations
check create_bad_endpoint json_ok 'j["error"]["param"] == "endpoint"'
req "$url/v1/batches/batch_nope"
check get_unknown status_is 404

# ---- cancel: long generations, stopped after some lines finished
: > "$tmp/long.jsonl"
for i in $(seq 1 60); do chat_line "long-$i" 400 >> "$tmp/long.jsonl"; done
fid=$(upload "$tmp/long.jsonl")
create "$fid"
cid=$(json_get 'j["id"]')
check cancel_progress wait_for "$cid" 'j["request_counts"]["completed"] >= 1'
req -X POST "$url/v1/batches/$cid/cancel"
check cancel_answer json_ok 'j["status"] in ("cancelling", "cancelled") and isinstance(j["cancelling_at"], int)'
check cancel_done wait_for "$cid" 'j["status"] == "cancelled"'
check cancel_partial json_ok 'isinstance(j["cancelled_at"], int) and 1 <= j["request_counts"]["completed"] < 60 and j["request_counts"]["total"] == 60'
done_n=$(json_get 'j["request_counts"]["completed"]')
content "$(json_get 'j["output_file_id"]')"
check cancel_output lines_ok "$tmp/$(json_get 'j["output_file_id"]').jsonl" 'len(L) == '"$done_n"' and len(set(l["custom_id"] for l in L)) == len(L)'
req -X POST "$url/v1/batches/$cid/cancel"
check cancel_twice status_is 409

# ---- list: newest first, cursor pages
req "$url/v1/batches?limit=2"
check list_page1 json_ok 'j["object"] == "list" and [b["id"] for b in j["data"]] == ["'"$cid"'", "'"$bid"'"] and j["has_more"] is True and j["last_id"] == "'"$bid"'"'
req "$url/v1/batches?limit=2&after=$bid"
check list_page2 json_ok 'len(j["data"]) == 1 and j["data"][0]["status"] == "failed" and j["has_more"] is False'
req "$url/v1/batches?after=batch_nope"
check list_bad_cursor status_is 400
req "$url/v1/batches?limit=0"
check list_bad_limit json_ok 'j["error"]["param"] == "limit"'

# ---- restart mid-batch: resumes, and no line runs to completion twice
: > "$tmp/resume.jsonl"
for i in $(seq 1 40); do chat_line "r-$i" 200 >> "$tmp/resume.jsonl"; done
fid=$(upload "$tmp/resume.jsonl")
create "$fid"
rid=$(json_get 'j["id"]')
check resume_started wait_for "$rid" 'j["request_counts"]["completed"] >= 2'
stop_serve
before=$(cat "$data/batches/$rid/output.part" | wc -l | tr -d ' ')
check resume_part_kept [ "$before" -ge 2 -a "$before" -lt 40 ]
start
check resume_log grep -q "batch $rid: resuming (in_progress, $before done)" "$tmp/serve.log"
check resume_completed wait_for "$rid" 'j["status"] == "completed"'
check resume_counts json_ok 'j["request_counts"] == {"total": 40, "completed": 40, "failed": 0} and j["error_file_id"] is None'
content "$(json_get 'j["output_file_id"]')"
check resume_no_duplicates lines_ok "$tmp/$(json_get 'j["output_file_id"]').jsonl" 'len(L) == 40 and sorted(l["custom_id"] for l in L) == sorted("r-%d" % i for i in range(1, 41))'

# ---- low priority: a local model busy with a client takes no batch lines
# (EOS, token 256 of the demo model, is banned so the client's request runs
# its 4 x 3500 tokens: several seconds even on a fast idle machine)
curl -s -o "$tmp/interactive.json" "$url/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"'"$model"'","messages":[{"role":"user","content":"go"}],"max_tokens":3500,"n":4,"logit_bias":{"256":-100}}' &
client=$!
sleep 0.3
: > "$tmp/quick.jsonl"
for i in 1 2 3 4; do chat_line "q-$i" 2 >> "$tmp/quick.jsonl"; done
fid=$(upload "$tmp/quick.jsonl")
create "$fid"
qid=$(json_get 'j["id"]')
check priority_in_progress wait_for "$qid" 'j["status"] == "in_progress"'
sleep 1
req "$url/v1/batches/$qid"
if kill -0 "$client" 2>/dev/null; then
    check priority_waits json_ok 'j["request_counts"]["completed"] == 0'
else
    fail priority_waits "the client's request ended before the check (too fast a machine for 4 x 3500 tokens)"
fi
wait "$client"
check priority_client_served "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["usage"]["completion_tokens"] == 4 * 3500 else 1)' "$tmp/interactive.json"
check priority_then_runs wait_for "$qid" 'j["status"] == "completed" and j["request_counts"]["completed"] == 4'
stop_serve
