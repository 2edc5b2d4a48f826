#!/bin/sh
# The grader test endpoints on a real `basalt serve` (the random demo
# model): /v1/fine_tuning/alpha/graders/validate echoes a good grader and
# answers 400 naming the field of a bad one; /run scores string_check,
# multi (sub_rewards) and a command grader running the Lambda handler
# examples/rewards/exact_answer.py, and reports an unresponsive reward
# (connection refused) as reward 0 with the error flags set.
. tests/support/lib.sh
trap '[ -n "$serve" ] && kill -9 "$serve" 2>/dev/null; rm -rf "$tmp"' EXIT

check() { # name, condition-command...
    name=$1; shift
    if "$@"; then pass "$name"; else fail "$name" "$* (status $(cat "$tmp/status"), body $(head -c 600 "$tmp/body"))"; fi
}

if [ ! -x "$BIN" ]; then echo "SKIP graders_api: $BIN not built"; exit 0; fi
if ! command -v curl > /dev/null; then echo "SKIP graders_api: curl not installed"; exit 0; fi

"$BIN" serve --random --port 0 --threads 1 --data "$tmp/data" > "$tmp/serve.log" 2>&1 &
serve=$!
for _ in $(seq 100); do
    url=$(sed -n 's/.*listening on \(http:[0-9.:/]*\).*/\1/p' "$tmp/serve.log" | head -1)
    [ -n "$url" ] && break
    sleep 0.1
done
if [ -z "$url" ]; then fail serve_start "$(cat "$tmp/serve.log")"; exit 1; fi

req() { curl -s -o "$tmp/body" -w '%{http_code}' "$@" > "$tmp/status"; }
post() { req -H 'Content-Type: application/json' -d "$2" "$url$1"; }

V=/v1/fine_tuning/alpha/graders/validate
R=/v1/fine_tuning/alpha/graders/run
SC='{"type":"string_check","name":"exact","input":"{{sample.output_text}}","reference":"{{item.answer}}","operation":"eq"}'

post $V "{\"grader\":$SC}"
check validate_ok eval 'status_is 200 && json_ok "j[\"grader\"][\"operation\"] == \"eq\""'

post $V '{"grader":{"type":"multi","name":"m","graders":{"a":{"type":"string_check","name":"a","input":"x","reference":"y","operation":"is"}},"calculate_output":"a"}}'
check validate_bad_field eval 'status_is 400 && json_ok "j[\"error\"][\"param\"] == \"grader.graders.a.operation\" and j[\"error\"][\"type\"] == \"invalid_request_error\""'

post $V '{"grader":{"type":"lambda","lambda":{"function":"unmapped-fn"}}}'
check validate_unmapped_lambda eval 'status_is 400 && json_ok "\"BASALT_LAMBDA_UNMAPPED_FN_URL\" in j[\"error\"][\"message\"]"'

post $R "{\"grader\":$SC,\"item\":{\"answer\":\"42\"},\"model_sample\":\"42\"}"
check run_string_check eval 'status_is 200 && json_ok "j[\"reward\"] == 1.0 and j[\"metadata\"][\"type\"] == \"string_check\" and j[\"metadata\"][\"name\"] == \"exact\" and j[\"metadata\"][\"errors\"][\"other_error\"] is False and j[\"sub_rewards\"] == {}"'

post $R '{"grader":{"type":"multi","name":"m","graders":{"e":{"type":"string_check","name":"e","input":"{{sample.output_json.city}}","reference":"{{item.city}}","operation":"eq"},"s":{"type":"text_similarity","name":"s","input":"{{sample.output_json.note}}","reference":"{{item.note}}","evaluation_metric":"rouge_1"}},"calculate_output":"(e + s) / 2"},"item":{"city":"Oslo","note":"cold and dark"},"model_sample":"{\"city\":\"Oslo\",\"note\":\"cold and windy\"}"}'
check run_multi eval 'status_is 200 && json_ok "abs(j[\"reward\"] - (1 + 2/3) / 2) < 1e-9 and j[\"sub_rewards\"][\"e\"] == 1.0 and abs(j[\"sub_rewards\"][\"s\"] - 2/3) < 1e-9"'

post $R "{\"grader\":{\"type\":\"command\",\"name\":\"lambda\",\"argv\":[\"$PY\",\"examples/rewards/lambda_runner.py\",\"examples/rewards/exact_answer.py\"]},\"item\":{\"reference_answer\":\"Paris\",\"messages\":[{\"role\":\"user\",\"content\":\"Capital of France?\"}]},\"model_sample\":\"Paris\"}"
check run_command_lambda eval 'status_is 200 && json_ok "j[\"reward\"] == 1.0 and j[\"metadata\"][\"scores\"][\"exact_match\"] == 1.0"'

post $R '{"grader":{"type":"http","name":"down","url":"http://127.0.0.1:1/","retries":0},"model_sample":"x"}'
check run_unresponsive eval 'status_is 200 && json_ok "j[\"reward\"] == 0 and j[\"metadata\"][\"errors\"][\"unresponsive_reward_error\"] is True and j[\"metadata\"][\"errors\"][\"reward_errors\"] == {\"connection\": 1}"'

post $R "{\"grader\":$SC}"
check run_needs_sample eval 'status_is 400 && json_ok "j[\"error\"][\"param\"] == \"model_sample\""'
