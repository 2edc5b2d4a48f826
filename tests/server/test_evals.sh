#!/bin/sh
# The Evals API on a real `basalt serve` (the random demo model, greedy):
# an eval with a string_check and a text_similarity criterion, a run over an
# uploaded JSONL file polled to completion, whose result_counts and
# per-criterion numbers must agree with its output items, and whose
# string_check verdicts the test recomputes from the output texts; list /
# retrieve / update / cancel / delete; errors naming the parameter; and a
# restart marking a run the dead process left in progress failed.
. tests/support/lib.sh
trap '[ -n "$serve" ] && kill -9 "$serve" 2>/dev/null; rm -rf "$tmp"' EXIT

CHECK_BODY=600

if [ ! -x "$BIN" ]; then echo "SKIP evals: $BIN not built"; exit 0; fi
if ! command -v curl > /dev/null; then echo "SKIP evals: curl not installed"; exit 0; fi

start() { start_serve "$tmp/serve.log" --random --port 0 --threads 1 --data "$tmp/data"; }
mkdir -p "$tmp/data"
start

req() { curl -s -o "$tmp/body" -w '%{http_code}' "$@" > "$tmp/status"; }
post() { req -H 'Content-Type: application/json' -d "$2" "$url$1"; }
# Poll run $2 of eval $1 until it leaves queued/in_progress.
wait_run() {
    for _ in $(seq 600); do
        req "$url/v1/evals/$1/runs/$2"
        st=$(json_get 'j["status"]')
        [ "$st" != queued ] && [ "$st" != in_progress ] && return 0
        sleep 0.1
    done
    return 1
}

# ---- the data: the expected substring is empty (always in the output),
# a single byte, or text the random model will not write
cat > "$tmp/items.jsonl" <<'EOF'
{"item": {"question": "Say hi", "expected": ""}}
{"item": {"question": "Name a colour", "expected": "e"}}
{"item": {"question": "Count to three", "expected": "no model writes this: qzxqzxqzx"}}
{"item": {"question": "Spell cat", "expected": "a"}}
EOF
req -F purpose=evals -F "file=@$tmp/items.jsonl" "$url/v1/files"
check upload status_is 200
file=$(json_get 'j["id"]')

SC='{"type":"string_check","name":"contains","input":"{{sample.output_text}}","reference":"{{item.expected}}","operation":"like"}'
TS='{"type":"text_similarity","name":"similar","input":"{{sample.output_text}}","reference":"{{item.question}}","evaluation_metric":"fuzzy_match","pass_threshold":0.2}'
CFG='{"type":"custom","item_schema":{"type":"object","properties":{"question":{"type":"string"},"expected":{"type":"string"}},"required":["question","expected"]},"include_sample_schema":true}'

post /v1/evals "{\"name\":\"demo\",\"data_source_config\":$CFG,\"testing_criteria\":[$SC,$TS],\"metadata\":{\"team\":\"x\"}}"
check create_eval eval 'status_is 200 && json_ok "j[\"object\"] == \"eval\" and j[\"id\"].startswith(\"eval_\") and j[\"name\"] == \"demo\" and len(j[\"testing_criteria\"]) == 2 and j[\"data_source_config\"][\"schema\"][\"required\"] == [\"item\", \"sample\"] and j[\"metadata\"] == {\"team\": \"x\"}"'
ev=$(json_get 'j["id"]')

# ---- errors name the parameter
post /v1/evals "{\"data_source_config\":$CFG,\"testing_criteria\":[$SC,{\"type\":\"string_check\",\"name\":\"b\",\"input\":\"x\",\"reference\":\"y\",\"operation\":\"equals\"}]}"
check bad_operation eval 'status_is 400 && json_ok "j[\"error\"][\"param\"] == \"testing_criteria[1].operation\" and j[\"error\"][\"message\"].startswith(\"testing_criteria[1].operation: \")"'
post /v1/evals "{\"data_source_config\":$CFG,\"testing_criteria\":[{\"type\":\"text_similarity\",\"name\":\"t\",\"input\":\"x\",\"reference\":\"y\",\"evaluation_metric\":\"fuzzy_match\"}]}"
check ts_needs_threshold eval 'status_is 400 && json_ok "j[\"error\"][\"param\"] == \"testing_criteria[0].pass_threshold\""'
post /v1/evals "{\"data_source_config\":{\"type\":\"logs\"},\"testing_criteria\":[$SC]}"
check bad_config eval 'status_is 400 && json_ok "j[\"error\"][\"param\"] == \"data_source_config.type\""'

TPL='"input_messages":{"type":"template","template":[{"role":"system","content":"Answer briefly."},{"role":"user","content":"{{item.question}}"}]}'
SP='"sampling_params":{"temperature":0,"max_completion_tokens":6,"seed":7}'
post "/v1/evals/$ev/runs" "{\"name\":\"r\",\"data_source\":{\"type\":\"completions\",\"model\":\"basalt-demo-random\",\"source\":{\"type\":\"file_id\",\"id\":\"file-nope\"},$TPL,$SP}}"
check unknown_file eval 'status_is 400 && json_ok "j[\"error\"][\"param\"] == \"data_source.source.id\" and \"file-nope\" in j[\"error\"][\"message\"]"'
post "/v1/evals/$ev/runs" "{\"data_source\":{\"type\":\"completions\",\"model\":\"no-such-model\",\"source\":{\"type\":\"file_id\",\"id\":\"$file\"},$TPL,$SP}}"
check unknown_model eval 'status_is 404 && json_ok "j[\"error\"][\"param\"] == \"data_source.model\""'
post "/v1/evals/$ev/runs" "{\"data_source\":{\"type\":\"completions\",\"model\":\"basalt-demo-random\",\"source\":{\"type\":\"file_content\",\"content\":[{\"item\":{\"question\":1}}]},$TPL,$SP}}"
check item_schema eval 'status_is 400 && json_ok "j[\"error\"][\"param\"] == \"data_source.source\""'
post "/v1/evals/$ev/runs" "{\"data_source\":{\"type\":\"completions\",\"model\":\"basalt-demo-random\",\"source\":{\"type\":\"file_id\",\"id\":\"$file\"},\"input_messages\":{\"type\":\"template\",\"template\":[{\"role\":\"user\",\"content\":\"{{bogus.x}}\"}]},$SP}}"
check bad_template eval 'status_is 400 && json_ok "j[\"error\"][\"param\"].startswith(\"data_source.input_messages.template[0].content\")"'
req "$url/v1/evals/eval_missing"
check unknown_eval eval 'status_is 404 && json_ok "j[\"error\"][\"param\"] == \"eval_id\""'
req "$url/v1/evals/$ev/runs/evalrun_missing"
check unknown_run status_is 404

# ---- a run to completion
post "/v1/evals/$ev/runs" "{\"name\":\"greedy\",\"data_source\":{\"type\":\"completions\",\"model\":\"basalt-demo-random\",\"source\":{\"type\":\"file_id\",\"id\":\"$file\"},$TPL,$SP}}"
check create_run eval 'status_is 200 && json_ok "j[\"object\"] == \"eval.run\" and j[\"id\"].startswith(\"evalrun_\") and j[\"status\"] in (\"queued\", \"in_progress\") and j[\"eval_id\"] == \"'"$ev"'\" and j[\"report_url\"] is None"'
run=$(json_get 'j["id"]')
check run_finishes wait_run "$ev" "$run"
cp "$tmp/body" "$tmp/run.json"
check run_completed eval 'json_ok "j[\"status\"] == \"completed\" and j[\"result_counts\"][\"total\"] == 4 and j[\"per_model_usage\"][0][\"model_name\"] == \"basalt-demo-random\""'
req "$url/v1/evals/$ev/runs/$run/output_items?limit=100"
cp "$tmp/body" "$tmp/items.json"
check output_items eval 'status_is 200 && json_ok "len(j[\"data\"]) == 4 and j[\"has_more\"] is False and sorted(o[\"datasource_item_id\"] for o in j[\"data\"]) == [0, 1, 2, 3]"'
# Recompute every verdict from the texts; the counts must agree with the items.
check counts_consistent "$PY" - "$tmp/run.json" "$tmp/items.json" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1])); items = json.load(open(sys.argv[2]))["data"]
ok = True
for o in items:
    text = o["sample"]["output"][0]["content"]
    r = {x["name"]: x for x in o["results"]}
    want = o["datasource_item"]["expected"] in text
    ok &= r["contains"]["passed"] == want and r["contains"]["score"] == (1.0 if want else 0.0)
    ok &= 0 <= r["similar"]["score"] <= 1 and r["similar"]["passed"] == (r["similar"]["score"] >= 0.2)
    ok &= o["status"] == ("pass" if all(x["passed"] for x in o["results"]) else "fail")
    ok &= o["sample"]["usage"]["completion_tokens"] <= 6 and o["sample"]["input"][1]["content"] == o["datasource_item"]["question"]
rc = run["result_counts"]
ok &= rc["passed"] == sum(o["status"] == "pass" for o in items) and rc["failed"] == sum(o["status"] == "fail" for o in items) and rc["errored"] == 0
for c in run["per_testing_criteria_results"]:
    ok &= c["passed"] == sum(x["passed"] for o in items for x in o["results"] if x["name"] == c["testing_criteria"])
    ok &= c["passed"] + c["failed"] == 4
contains = [c for c in run["per_testing_criteria_results"] if c["testing_criteria"] == "contains"][0]
ok &= contains["failed"] >= 1 and contains["passed"] >= 1  # item 0 always passes, item 2 never
sys.exit(0 if ok else 1)
EOF
req "$url/v1/evals/$ev/runs/$run/output_items?status=fail"
check output_items_filter json_ok 'all(o["status"] == "fail" for o in j["data"])'
oid=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"][0]["id"])' "$tmp/items.json")
req "$url/v1/evals/$ev/runs/$run/output_items/$oid"
check output_item_get eval 'status_is 200 && json_ok "j[\"id\"] == \"'"$oid"'\" and j[\"run_id\"] == \"'"$run"'\""'

# ---- inline content and item_reference; cancel
post "/v1/evals/$ev/runs" "{\"data_source\":{\"type\":\"completions\",\"model\":\"basalt-demo-random\",\"source\":{\"type\":\"file_content\",\"content\":[{\"item\":{\"question\":\"q\",\"expected\":\"\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}]},\"input_messages\":{\"type\":\"item_reference\",\"item_reference\":\"item.messages\"},$SP}}"
run2=$(json_get 'j["id"]')
check inline_run wait_run "$ev" "$run2"
check inline_completed json_ok 'j["status"] == "completed" and j["result_counts"] == {"total": 1, "errored": 0, "failed": 0 if j["result_counts"]["passed"] else 1, "passed": j["result_counts"]["passed"]}'

"$PY" -c 'import json; print(json.dumps({"data_source":{"type":"completions","model":"basalt-demo-random","source":{"type":"file_content","content":[{"item":{"question":"q%d" % i,"expected":""}} for i in range(400)]},"input_messages":{"type":"template","template":[{"role":"user","content":"{{item.question}}"}]},"sampling_params":{"max_completion_tokens":64}}}))' > "$tmp/big.json"
req -H 'Content-Type: application/json' -d @"$tmp/big.json" "$url/v1/evals/$ev/runs"
run3=$(json_get 'j["id"]')
sleep 0.3
post "/v1/evals/$ev/runs/$run3" '{}'
check cancel eval 'status_is 200 && json_ok "j[\"status\"] == \"canceled\" and j[\"result_counts\"][\"total\"] < 400"'
post "/v1/evals/$ev/runs/$run3/cancel" '{}'
check cancel_again eval 'status_is 400 && json_ok "\"canceled\" in j[\"error\"][\"message\"]"'

# ---- lists, update, delete
req "$url/v1/evals/$ev/runs?limit=2"
check runs_list eval 'status_is 200 && json_ok "[r[\"id\"] for r in j[\"data\"]] == [\"'"$run"'\", \"'"$run2"'\"] and j[\"has_more\"] is True"'
req "$url/v1/evals/$ev/runs?order=desc&after=$run3"
check runs_list_desc json_ok '[r["id"] for r in j["data"]] == ["'"$run2"'", "'"$run"'"] and j["has_more"] is False'
post "/v1/evals/$ev" '{"name":"renamed","metadata":{"team":"y"}}'
check update_eval eval 'status_is 200 && json_ok "j[\"name\"] == \"renamed\" and j[\"metadata\"] == {\"team\": \"y\"} and len(j[\"testing_criteria\"]) == 2"'
req "$url/v1/evals?limit=10"
check evals_list json_ok '[e["id"] for e in j["data"]] == ["'"$ev"'"] and j["data"][0]["name"] == "renamed"'
req -X DELETE "$url/v1/evals/$ev/runs/$run2"
check delete_run eval 'status_is 200 && json_ok "j[\"deleted\"] is True and j[\"run_id\"] == \"'"$run2"'\""'
req "$url/v1/evals/$ev/runs/$run2"
check deleted_run_gone status_is 404

# ---- a restart fails what a killed process left running
req -H 'Content-Type: application/json' -d @"$tmp/big.json" "$url/v1/evals/$ev/runs"
run4=$(json_get 'j["id"]')
sleep 0.3
kill -9 "$serve"
wait "$serve" 2>/dev/null
start
req "$url/v1/evals/$ev/runs/$run4"
check restart_fails_run eval 'status_is 200 && json_ok "j[\"status\"] == \"failed\" and j[\"error\"][\"code\"] == \"server_restarted\""'

req -X DELETE "$url/v1/evals/$ev"
check delete_eval eval 'status_is 200 && json_ok "j[\"deleted\"] is True"'
req "$url/v1/evals/$ev/runs/$run"
check deleted_eval_gone status_is 404
