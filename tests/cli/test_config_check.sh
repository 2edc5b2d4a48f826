#!/bin/sh
# `basalt config check`: the ok line and exit 0 for a valid config; the
# extra pre-serve checks (a missing local model path is an error naming
# FILE:LINE, an unset api_key_env a warning); FILE:LINE:COL errors and exit
# 1 for invalid configs; exit 2 for usage errors.
. tests/support/lib.sh

mkdir "$tmp/tiny"
cat > "$tmp/ok.yaml" <<YAML
providers:
  - {name: up1, base_url: "http://127.0.0.1:9001/v1", api_key_env: BASALT_TEST_UNSET_KEY}
guardrails:
  - {name: pii, type: pii}
models:
  - {name: local-tiny, path: $tmp/tiny}
  - {name: remote-a, provider: up1, model: gpt-4o-mini}
routes:
  - name: canary
    targets: [{model: local-tiny, weight: 90}, {model: remote-a, weight: 10}]
YAML
unset BASALT_TEST_UNSET_KEY
"$BIN" config check "$tmp/ok.yaml" > "$tmp/o" 2> "$tmp/e"; rc=$?
check config_ok sh -c "[ $rc = 0 ] && grep -qx '$tmp/ok.yaml: ok (1 providers, 2 models, 1 routes, 1 guardrails)' '$tmp/o'"
check config_key_warning grep -q "ok.yaml:2: warning: providers\[0\].api_key_env: BASALT_TEST_UNSET_KEY is not set" "$tmp/e"

BASALT_TEST_UNSET_KEY=sk-x "$BIN" config check "$tmp/ok.yaml" > "$tmp/o" 2> "$tmp/e"; rc=$?
check config_key_set sh -c "[ $rc = 0 ] && [ ! -s '$tmp/e' ]"

sed "s|$tmp/tiny|$tmp/missing|" "$tmp/ok.yaml" > "$tmp/nopath.yaml"
"$BIN" config check "$tmp/nopath.yaml" > "$tmp/o" 2> "$tmp/e"; rc=$?
check config_missing_path sh -c "[ $rc = 1 ] && [ ! -s '$tmp/o' ] && grep -q 'nopath.yaml:6: models\[0\].path: $tmp/missing does not exist' '$tmp/e'"

printf 'models:\n  - {name: a, path: /a}\n  - {name: a, path: /b}\n' > "$tmp/dup.yaml"
"$BIN" config check "$tmp/dup.yaml" > "$tmp/o" 2> "$tmp/e"; rc=$?
check config_error sh -c "[ $rc = 1 ] && grep -q \"dup.yaml:3:12: models\[1\].name: 'a' is already defined\" '$tmp/e' && [ \$(wc -l < '$tmp/e') = 1 ]"

printf 'models: [{name: a\n' > "$tmp/syntax.yaml"
"$BIN" config check "$tmp/syntax.yaml" > "$tmp/o" 2> "$tmp/e"; rc=$?
check config_syntax sh -c "[ $rc = 1 ] && grep -q 'syntax.yaml:2:1: YAML syntax error' '$tmp/e'"

"$BIN" config check "$tmp/absent.yaml" > "$tmp/o" 2> "$tmp/e"; rc=$?
check config_no_file sh -c "[ $rc = 1 ] && grep -q 'absent.yaml' '$tmp/e'"

"$BIN" config check docs/basalt.example.yaml > "$tmp/o" 2> "$tmp/e"
check config_example_parses sh -c "! grep -q 'basalt.example.yaml:[0-9]*:[0-9]*:' '$tmp/e'"

"$BIN" config frob "$tmp/ok.yaml" > "$tmp/o" 2> "$tmp/e"; rc=$?
check config_usage_action sh -c "[ $rc = 2 ] && grep -q \"unknown action 'frob'\" '$tmp/e'"
"$BIN" config check > "$tmp/o" 2> "$tmp/e"; rc=$?
check config_usage_missing [ $rc = 2 ]
