#!/bin/sh
# Fine-tuning jobs end to end on a real `basalt serve` (the random demo
# model, LoRA, one training thread): upload data through /v1/files, create
# a job, poll it to success, read its metrics events and checkpoints, chat
# with the ft: model at temperature 0 and get the memorised answers, see it
# in /v1/models with its parent; request errors naming their parameter; a
# bad data file failing the job with a line-numbered report; cancel; pause
# and resume from the paused step; kill -9 mid-job and a restart that
# continues from the last checkpoint (not from step 0) with the earlier
# events kept; succeeded jobs' models served again after a restart; a
# reinforcement job (grader errors at create, reward metrics events,
# checkpoints, the ft: model answering).
. tests/support/lib.sh
trap '[ -n "$serve" ] && kill -9 "$serve" 2>/dev/null; rm -rf "$tmp"' EXIT

CHECK_BODY=600

if [ ! -x "$BIN" ]; then echo "SKIP fine_tuning: $BIN not built"; exit 0; fi
if ! command -v curl > /dev/null; then echo "SKIP fine_tuning: curl not installed"; exit 0; fi
data="$tmp/data"
MODEL=basalt-demo-random

start() { start_serve "$tmp/serve.log" --random --port 0 --threads 1 --data "$data"; }
crash() { kill -9 "$serve" && wait "$serve" 2>/dev/null; serve=; }

req() { curl -s -o "$tmp/body" -w '%{http_code}' "$@" > "$tmp/status"; }
post() { req -H 'Content-Type: application/json' -d "$2" "$url$1"; }
upload() { # file -> id
    req -F purpose=fine-tune -F "file=@$1" "$url/v1/files"
    json_get 'j["id"]'
}
# Poll job $1 until the Python condition $2 over it (j) holds; 0 on time.
wait_job() {
    for _ in $(seq 600); do
        req "$url/v1/fine_tuning/jobs/$1"
        json_ok "$2" 2> /dev/null && return 0
        sleep 0.1
    done
    return 1
}
# Every event of job $1, oldest first, into $tmp/events.json.
all_events() {
    req "$url/v1/fine_tuning/jobs/$1/events?limit=1000"
    "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); json.dump(j["data"][::-1], open(sys.argv[2], "w"))' \
        "$tmp/body" "$tmp/events.json"
}
events_ok() { "$PY" -c 'import json,sys; ev=json.load(open(sys.argv[1])); m=[e["data"] for e in ev if e["type"]=="metrics"]; msgs=[e["message"] for e in ev]; sys.exit(0 if eval(sys.argv[2]) else 1)' "$tmp/events.json" "$1"; }

start
# A memorised mapping: four one-word questions, four answers.
for pair in cat:dog sun:moon red:blue owl:fox; do
    printf '{"messages":[{"role":"user","content":"%s"},{"role":"assistant","content":"%s"}]}\n' "${pair%%:*}" "${pair#*:}"
done > "$tmp/train.jsonl"
train=$(upload "$tmp/train.jsonl")
head -2 "$tmp/train.jsonl" > "$tmp/valid.jsonl"
valid=$(upload "$tmp/valid.jsonl")
HP='"n_epochs":30,"batch_size":4,"learning_rate_multiplier":100,"lora_rank":8,"checkpoint_every":5'

# ---- request errors name their parameter and create nothing
bad() { # name param body
    post /v1/fine_tuning/jobs "$3"
    check "$1" json_ok "j['error']['param'] == '$2'"
}
bad create_no_model model '{"training_file":"'$train'"}'
bad create_no_file training_file '{"model":"'$MODEL'"}'
bad create_unknown_file training_file '{"model":"'$MODEL'","training_file":"file-nope"}'
bad create_unknown_valid validation_file '{"model":"'$MODEL'","training_file":"'$train'","validation_file":"file-nope"}'
bad create_bad_epochs method.supervised.hyperparameters.n_epochs '{"model":"'$MODEL'","training_file":"'$train'","method":{"type":"supervised","supervised":{"hyperparameters":{"n_epochs":0}}}}'
bad create_unknown_hparam hyperparameters.momentum '{"model":"'$MODEL'","training_file":"'$train'","hyperparameters":{"momentum":0.9}}'
bad create_bad_lr hyperparameters.learning_rate_multiplier '{"model":"'$MODEL'","training_file":"'$train'","hyperparameters":{"learning_rate_multiplier":-1}}'
bad create_dpo method.type '{"model":"'$MODEL'","training_file":"'$train'","method":{"type":"dpo"}}'
bad create_bad_suffix suffix '{"model":"'$MODEL'","training_file":"'$train'","suffix":""}'
bad create_bad_seed seed '{"model":"'$MODEL'","training_file":"'$train'","seed":-4}'
printf '{"custom_id":"1"}\n' > "$tmp/batch.jsonl"
req -F purpose=batch -F "file=@$tmp/batch.jsonl" "$url/v1/files"
bad create_wrong_purpose training_file '{"model":"'$MODEL'","training_file":"'$(json_get 'j["id"]')'"}'
post /v1/fine_tuning/jobs '{"model":"nope","training_file":"'$train'"}'
check create_unknown_model sh -c "[ $(cat "$tmp/status") = 404 ] && grep -q model_not_found '$tmp/body'"
req "$url/v1/fine_tuning/jobs"
check nothing_created json_ok "j == {'object': 'list', 'data': [], 'has_more': False}"
req "$url/v1/fine_tuning/jobs/ftjob-nope"
check get_unknown_404 status_is 404
req -X POST "$url/v1/fine_tuning/jobs/ftjob-nope/cancel"
check cancel_unknown_404 status_is 404

# ---- a job from creation to a served model
post /v1/fine_tuning/jobs '{"model":"'$MODEL'","training_file":"'$train'","validation_file":"'$valid'","suffix":"Pets v1!","seed":7,"method":{"type":"supervised","supervised":{"hyperparameters":{'"$HP"'}}}}'
check create_status status_is 200
check create_object json_ok "j['object'] == 'fine_tuning.job' and j['id'].startswith('ftjob-') and j['status'] == 'validating_files' and j['model'] == '$MODEL' and j['training_file'] == '$train' and j['validation_file'] == '$valid' and j['seed'] == 7 and j['fine_tuned_model'] is None and j['hyperparameters']['n_epochs'] == 30 and j['method']['type'] == 'supervised' and j['error'] is None and j['user_provided_suffix'] == 'Pets v1!'"
job1=$(json_get 'j["id"]')
check job1_succeeded wait_job "$job1" "j['status'] in ('succeeded', 'failed', 'cancelled')"
ft1="ft:$MODEL:pets-v1-:$job1"
check job1_object json_ok "j['status'] == 'succeeded' and j['fine_tuned_model'] == '$ft1' and j['trained_tokens'] > 0 and isinstance(j['finished_at'], int) and j['hyperparameters']['batch_size'] == 4 and j['hyperparameters']['lora_rank'] == 8"
all_events "$job1"
check job1_metrics events_ok "len(m) == 30 and [d['step'] for d in m] == list(range(1, 31)) and all(d['total_steps'] == 30 for d in m)"
check job1_loss_falls events_ok "m[-1]['train_loss'] < 0.1 * m[0]['train_loss'] and 'valid_loss' in m[-1] and m[-1]['valid_loss'] < 0.1"
check job1_metric_fields events_ok "all(k in m[0] for k in ('learning_rate', 'tokens_per_second', 'epoch', 'grad_norm'))"
check job1_messages events_ok "msgs[0] == 'Created fine-tuning job' and 'Files validated, moving job to queued state' in msgs and msgs[-1] == 'The job has successfully completed'"
req "$url/v1/fine_tuning/jobs/$job1/events?limit=2"
check events_page json_ok "j['has_more'] is True and len(j['data']) == 2 and j['data'][0]['message'] == 'The job has successfully completed'"
after=$(json_get 'j["data"][1]["id"]')
req "$url/v1/fine_tuning/jobs/$job1/events?limit=1&after=$after"
check events_after json_ok "len(j['data']) == 1 and j['data'][0]['type'] in ('message', 'metrics') and j['data'][0]['id'] != '$after'"
req "$url/v1/fine_tuning/jobs/$job1/checkpoints"
check checkpoints json_ok "[c['step_number'] for c in j['data']] == [30, 25, 20, 15, 10, 5] and j['has_more'] is False and j['first_id'] == j['data'][0]['id'] and j['data'][0]['fine_tuned_model_checkpoint'] == '$ft1:ckpt-step-30' and j['data'][0]['object'] == 'fine_tuning.job.checkpoint' and j['data'][0]['fine_tuning_job_id'] == '$job1' and j['data'][0]['metrics']['step'] == 30"
req "$url/v1/fine_tuning/jobs/$job1/checkpoints?limit=2"
check checkpoints_page json_ok "len(j['data']) == 2 and j['has_more'] is True"
check adapter_saved sh -c "[ -s '$data/models/ft/$job1/adapter_model.safetensors' ] && grep -q lora_alpha '$data/models/ft/$job1/adapter_config.json'"

# The tuned model answers with what it learned; the base does not.
chat() { # model question
    post /v1/chat/completions '{"model":"'"$1"'","messages":[{"role":"user","content":"'"$2"'"}],"temperature":0,"max_tokens":4}'
}
learned=1
for pair in cat:dog sun:moon red:blue owl:fox; do
    chat "$ft1" "${pair%%:*}"
    json_ok "j['choices'][0]['message']['content'].startswith('${pair#*:}')" || { learned=0; fail "chat_${pair%%:*}" "$(cat "$tmp/body")"; }
done
check chat_learned [ $learned = 1 ]
chat "$MODEL" cat
check base_unchanged json_ok "not j['choices'][0]['message']['content'].startswith('dog')"
req "$url/v1/models"
check models_lists_ft json_ok "any(m['id'] == '$ft1' and m.get('parent') == '$MODEL' for m in j['data'])"
req "$url/v1/fine_tuning/jobs"
check list_jobs json_ok "[x['id'] for x in j['data']] == ['$job1'] and j['has_more'] is False"

# ---- bad data: the job fails with every bad line numbered
printf '%s\n' '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}' \
    '{"messages":[{"role":"user","content":"no answer"}]}' \
    '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}' \
    'not json' > "$tmp/bad.jsonl"
badfile=$(upload "$tmp/bad.jsonl")
post /v1/fine_tuning/jobs '{"model":"'$MODEL'","training_file":"'$badfile'"}'
jobbad=$(json_get 'j["id"]')
check bad_data_fails wait_job "$jobbad" "j['status'] == 'failed'"
check bad_data_report json_ok "j['error']['code'] == 'invalid_training_file' and j['error']['param'] == 'training_file' and 'line 2' in j['error']['message'] and 'line 4' in j['error']['message'] and 'line 1:' not in j['error']['message'] and j['fine_tuned_model'] is None"

# ---- cancel a running job
LONG='"n_epochs":50,"batch_size":1,"learning_rate_multiplier":10,"lora_rank":4,"checkpoint_every":4'
post /v1/fine_tuning/jobs '{"model":"'$MODEL'","training_file":"'$train'","hyperparameters":{'"$LONG"'}}'
job2=$(json_get 'j["id"]')
check cancel_running wait_job "$job2" "j['status'] == 'running'"
req -X POST "$url/v1/fine_tuning/jobs/$job2/cancel"
check cancel_answer json_ok "j['status'] == 'cancelled' and isinstance(j['finished_at'], int)"
sleep 0.5
req "$url/v1/fine_tuning/jobs/$job2"
check cancel_stays json_ok "j['status'] == 'cancelled' and j['fine_tuned_model'] is None"
req -X POST "$url/v1/fine_tuning/jobs/$job2/cancel"
check cancel_twice_400 sh -c "[ $(cat "$tmp/status") = 400 ] && grep -q cancelled '$tmp/body'"
req -X POST "$url/v1/fine_tuning/jobs/$job2/resume"
check resume_cancelled_400 status_is 400
req -X POST "$url/v1/fine_tuning/jobs/$job2/frobnicate"
check unknown_verb_404 status_is 404

# ---- pause, then resume from the paused step
post /v1/fine_tuning/jobs '{"model":"'$MODEL'","training_file":"'$train'","hyperparameters":{'"$LONG"'}}'
job3=$(json_get 'j["id"]')
wait_job "$job3" "j['status'] == 'running'"
sleep 1
req -X POST "$url/v1/fine_tuning/jobs/$job3/pause"
check pause_answer json_ok "j['status'] == 'paused'"
for _ in $(seq 100); do all_events "$job3"; events_ok "any(x.startswith('Fine-tuning job paused at step') for x in msgs)" && break; sleep 0.1; done
check paused_checkpointed events_ok "any(x.startswith('Fine-tuning job paused at step') for x in msgs)"
paused_at=$("$PY" -c 'import json,sys; ev=json.load(open(sys.argv[1])); print([e["message"] for e in ev if e["message"].startswith("Fine-tuning job paused at step")][0].split()[-1])' "$tmp/events.json")
req "$url/v1/fine_tuning/jobs/$job3/checkpoints?limit=1"
check paused_checkpoint_step json_ok "j['data'][0]['step_number'] == $paused_at"
sleep 0.5
req "$url/v1/fine_tuning/jobs/$job3"
check pause_holds json_ok "j['status'] == 'paused'"
req -X POST "$url/v1/fine_tuning/jobs/$job3/pause"
check pause_twice_400 status_is 400
req -X POST "$url/v1/fine_tuning/jobs/$job3/resume"
check resume_answer json_ok "j['status'] == 'queued'"
check resumed_running wait_job "$job3" "j['status'] in ('running', 'succeeded')"
for _ in $(seq 100); do all_events "$job3"; events_ok "m and m[-1]['step'] > $paused_at" && break; sleep 0.1; done
check resume_continues events_ok "'Fine-tuning job resumed at step $paused_at of 200' in msgs and [d['step'] for d in m].count(1) == 1 and [d['step'] for d in m][[d['step'] for d in m].index($paused_at) + 1] == $paused_at + 1"
req -X POST "$url/v1/fine_tuning/jobs/$job3/cancel"
check cancel_resumed json_ok "j['status'] == 'cancelled'"

# ---- kill -9 mid-job: a restart continues from the last checkpoint
post /v1/fine_tuning/jobs '{"model":"'$MODEL'","training_file":"'$train'","suffix":"crash","hyperparameters":{"n_epochs":12,"batch_size":1,"learning_rate_multiplier":100,"lora_rank":8,"checkpoint_every":4}}'
job4=$(json_get 'j["id"]')
for _ in $(seq 300); do
    req "$url/v1/fine_tuning/jobs/$job4/checkpoints?limit=1"
    json_ok "j['data'] and j['data'][0]['step_number'] >= 8" 2> /dev/null && break
    sleep 0.1
done
crash
ckpt=$("$PY" -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select max(step) from fine_tuning_checkpoints where job_id=?", (sys.argv[2],)).fetchone()[0])' "$data/basalt.db" "$job4")
before=$("$PY" -c 'import sqlite3,sys; print(" ".join(r[0] for r in sqlite3.connect(sys.argv[1]).execute("select id from fine_tuning_events where job_id=?", (sys.argv[2],))))' "$data/basalt.db" "$job4")
check killed_mid_job sh -c "[ '$ckpt' -ge 8 ] && [ '$ckpt' -lt 48 ]"
start
check restarted_job_succeeds wait_job "$job4" "j['status'] in ('succeeded', 'failed', 'cancelled')"
check restarted_job_object json_ok "j['status'] == 'succeeded' and j['fine_tuned_model'] == 'ft:$MODEL:crash:$job4'"
all_events "$job4"
check restart_keeps_events "$PY" -c 'import json,sys; ids={e["id"] for e in json.load(open(sys.argv[1]))}; sys.exit(0 if set(sys.argv[2].split()) <= ids else 1)' "$tmp/events.json" "$before"
check restart_resumes_from_checkpoint events_ok "'The server restarted; the job continues from its last checkpoint' in msgs and 'Fine-tuning job resumed at step $ckpt of 48' in msgs and [d['step'] for d in m].count(1) == 1 and m[-1]['step'] == 48"
check restart_steps_after_resume events_ok "[d['step'] for d in m][len(m) - (48 - $ckpt):] == list(range($ckpt + 1, 49))"

# ---- a restart serves every succeeded job's model again
stop_serve
start
req "$url/v1/models"
check restart_models json_ok "{'$ft1', 'ft:$MODEL:crash:$job4'} <= {m['id'] for m in j['data']}"
chat "$ft1" sun
check restart_chat json_ok "j['choices'][0]['message']['content'].startswith('moon')"
req "$url/v1/fine_tuning/jobs?limit=2"
check list_after_restart json_ok "[x['id'] for x in j['data']] == ['$job4', '$job3'] and j['has_more'] is True"

# ---- reinforcement fine-tuning: the grader in the request (checked like
# /graders/validate), reward metrics events, the ft: model served
for q in cat sun red owl; do printf '{"messages":[{"role":"user","content":"%s"}],"reference_answer":"x"}\n' "$q"; done > "$tmp/prompts.jsonl"
prompts=$(upload "$tmp/prompts.jsonl")
GRADER='{"type":"string_check","name":"nonempty","input":"{{sample.output_text}}","reference":"","operation":"ne"}'
RFT_HP='"n_epochs":2,"batch_size":2,"group_size":4,"max_completion_tokens":4,"checkpoint_every":2,"loss_type":"grpo"'
bad create_rft_no_grader method.reinforcement.grader '{"model":"'$MODEL'","training_file":"'$prompts'","method":{"type":"reinforcement","reinforcement":{}}}'
bad create_rft_bad_grader method.reinforcement.grader '{"model":"'$MODEL'","training_file":"'$prompts'","method":{"type":"reinforcement","reinforcement":{"grader":{"type":"string_check","name":"x","input":"a","reference":"b","operation":"frob"}}}}'
bad create_rft_bad_group method.reinforcement.hyperparameters.group_size '{"model":"'$MODEL'","training_file":"'$prompts'","method":{"type":"reinforcement","reinforcement":{"grader":'"$GRADER"',"hyperparameters":{"group_size":1}}}}'
bad create_rft_bad_keep method.reinforcement.hyperparameters.keep_checkpoints '{"model":"'$MODEL'","training_file":"'$prompts'","method":{"type":"reinforcement","reinforcement":{"grader":'"$GRADER"',"hyperparameters":{"keep_checkpoints":0}}}}'
bad create_rft_bad_loss method.reinforcement.hyperparameters.loss_type '{"model":"'$MODEL'","training_file":"'$prompts'","method":{"type":"reinforcement","reinforcement":{"grader":'"$GRADER"',"hyperparameters":{"loss_type":"ppo"}}}}'
post /v1/fine_tuning/jobs '{"model":"'$MODEL'","training_file":"'$prompts'","suffix":"rft","method":{"type":"reinforcement","reinforcement":{"grader":'"$GRADER"',"hyperparameters":{'"$RFT_HP"'}}}}'
check rft_create json_ok "j['method']['type'] == 'reinforcement' and j['method']['reinforcement']['grader']['name'] == 'nonempty' and j['method']['reinforcement']['hyperparameters']['group_size'] == 4 and j['hyperparameters']['eval_interval'] == 'auto'"
job5=$(json_get 'j["id"]')
check rft_succeeds wait_job "$job5" "j['status'] in ('succeeded', 'failed', 'cancelled')"
check rft_object json_ok "j['status'] == 'succeeded' and j['fine_tuned_model'] == 'ft:$MODEL:rft:$job5' and j['method']['reinforcement']['hyperparameters']['loss_type'] == 'grpo' and j['trained_tokens'] > 0"
all_events "$job5"
check rft_metrics events_ok "[d['step'] for d in m] == [1, 2, 3, 4] and all(0 <= d['train_reward_mean'] <= 1 and d['samples'] == 8 and d['grader_errors']['timeout'] == 0 and d['completion_length_max'] <= 4 for d in m) and any(x.startswith('Step 4/4: train_reward_mean=') for x in msgs)"
check rft_metric_keys events_ok "all({'entropy', 'kl', 'frac_reward_zero_std', 'completion_length_mean', 'completion_length_max', 'clip_ratio', 'truncated_fraction', 'grader_errors', 'scores', 'timing'} <= set(d) and d['entropy'] >= 0 and d['scores']['train_reward_mean'] == d['train_reward_mean'] and d['scores']['graders'][0]['name'] == 'nonempty' and d['scores']['graders'][0]['train_reward_mean'] == d['train_reward_mean'] and set(d['timing']['step']) == {'sampling', 'grading', 'training', 'eval', 'full_iteration'} for d in m) and any(x.endswith('from the last step (no validation file)') for x in msgs)"
req "$url/v1/fine_tuning/jobs/$job5/checkpoints"
check rft_checkpoints json_ok "sorted(c['step_number'] for c in j['data']) == [2, 4] and 'train_reward_mean' in j['data'][0]['metrics']"
chat "ft:$MODEL:rft:$job5" sun
check rft_chat status_is 200
stop_serve
