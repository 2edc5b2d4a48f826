#!/bin/sh
# `basalt demo` end to end in a tiny configuration (the tiny default model,
# 3 RFT steps): the reward handler starts, both files are uploaded, the
# reinforcement job succeeds, the before/after table prints numbers that
# parse, the chats print, and nothing is left behind (state directory,
# handler process).  Whether the reward rises is not checked here: this
# model learns nothing in 3 steps (tests/train/test_rft.c shows GRPO
# raising a reward; README.md records the full demo's numbers).  Plus the
# usage and missing-Python errors.
. tests/support/lib.sh

check() { # name, condition-command...
    name=$1; shift
    if "$@"; then pass "$name"; else fail "$name" "$* ($(tail -n 5 "$tmp/o" "$tmp/e" 2>/dev/null))"; fi
}

if [ ! -x "$BIN" ]; then echo "SKIP demo: $BIN not built"; exit 0; fi
if [ ! -x "$PY" ]; then echo "SKIP demo: $PY not found"; exit 0; fi
export TMPDIR="$tmp"

"$BIN" demo --help > "$tmp/o" 2>&1
check help sh -c "grep -q 'usage: basalt demo' '$tmp/o' && grep -q -- --steps '$tmp/o' && grep -q -- --python '$tmp/o'"
"$BIN" demo --steps 0 > "$tmp/o" 2> "$tmp/e"; rc=$?
check bad_steps sh -c "[ $rc = 2 ] && grep -q -- '--steps 1..1000' '$tmp/e'"

"$BIN" demo --tiny --data "$tmp/data" --steps 3 --python "$PY" > "$tmp/o" 2> "$tmp/e"; rc=$?
check demo_ok [ $rc = 0 ]
check tiny_model_built [ -f "$tmp/data/models/basalt-default-tiny/basalt_build.json" ]
check real_model_untouched [ ! -e "$tmp/data/models/basalt-default" ]
check data_written grep -q '^ *48 training, 32 validation, 128 held-out prompts' "$tmp/o"
check uploaded sh -c "[ \$(grep -c '^upload .* -> file-' '$tmp/o') = 2 ]"
check lambda_grader grep -q '"grader":{"type":"lambda","lambda":{"function":"arn:aws:lambda:' "$tmp/o"
check job_progress sh -c "grep -q 'Fine-tuning job started: 3 steps' '$tmp/o' && grep -q 'step   3/3  train reward [0-9.]*' '$tmp/o'"
check job_succeeded grep -q 'The job has successfully completed' "$tmp/o"
# Both rows carry two rewards in [0, 1]; the goal line repeats the sampled pair.
check table_parses "$PY" -c '
import re, sys
out = open(sys.argv[1]).read()
rows = {k: tuple(map(float, re.search(k + r".*?\s([0-9.]+)\s+([0-9.]+)\n", out).groups())) for k in ("sampled:", "greedy:")}
goal = re.search(r"goal .*: (MET|NOT MET) \(([0-9.]+) -> ([0-9.]+) in \d+ s\)", out)
ok = all(0 <= x <= 1 for r in rows.values() for x in r) and goal and (float(goal[2]), float(goal[3])) == rows["sampled:"]
sys.exit(0 if ok else 1)' "$tmp/o"
check tuned_model grep -q '^tuned model ft:basalt-default:demo:ftjob-' "$tmp/o"
check chats sh -c "[ \$(grep -c '^  user:  Uppercase: ' '$tmp/o') = 5 ] && [ \$(grep -c '^    tuned: ' '$tmp/o') = 5 ]"
state=$(sed -n 's/^server .*state in \(.*\)$/\1/p' "$tmp/o")
check state_removed sh -c "[ -n '$state' ] && [ ! -e '$state' ]"
handler=$(sed -n 's/^reward .* served at \(http:[0-9.:/]*\) .*/\1/p' "$tmp/o")
check handler_stopped sh -c "[ -n '$handler' ] && ! curl -s -m 2 -d '[]' '$handler' > /dev/null"

# ---- no Python: exit 1 with the reason, the state kept for a look
"$BIN" demo --tiny --data "$tmp/data" --steps 1 --python "$tmp/no-python" > "$tmp/o" 2> "$tmp/e"; rc=$?
check no_python sh -c "[ $rc = 1 ] && grep -q 'did not start' '$tmp/e' && grep -q 'kept .*basalt-demo-' '$tmp/e'"
