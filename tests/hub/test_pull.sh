#!/bin/sh
# `basalt pull` against tests/hub/mock_hub.py on loopback: cache layout,
# re-pulls that download nothing, resume with Range, checksum failures, auth,
# errors, GGUF specs, unsafe names and revisions; then `basalt serve` finds a
# pulled model by its hub name.  Uses $BASALT_BIN.
. tests/support/lib.sh
here=$(dirname "$0")
mock= serve=
trap '[ -n "$mock" ] && kill "$mock" 2>/dev/null; [ -n "$serve" ] && kill "$serve" 2>/dev/null; rm -rf "$tmp"' EXIT

if [ ! -x "$BIN" ]; then echo "SKIP pull: $BIN not built"; exit 0; fi
# A real (tiny, random) chat model for the hub to offer as acme/chat.
chat_repo=
if "$PY" -c 'import sys; sys.path[:0] = [sys.argv[1] + "/../server", sys.argv[1] + "/../oracle"]
import serve_client; serve_client.make_model(sys.argv[2])' "$here" "$tmp/chat" 2> "$tmp/make_model.err"; then
    chat_repo="--repo-dir acme/chat=$tmp/chat"
fi
# shellcheck disable=SC2086 # chat_repo is two words or none
"$PY" "$here/mock_hub.py" --log "$tmp/log" --export "$tmp/expect" $chat_repo > "$tmp/port" 2> "$tmp/mock.err" &
mock=$!
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
if [ ! -s "$tmp/port" ]; then fail mock_hub "did not start: $(cat "$tmp/mock.err")"; exit 1; fi
export HF_ENDPOINT="http://127.0.0.1:$(cat "$tmp/port")"
unset HF_TOKEN BASALT_DATA
data="$tmp/data"
cache="$data/models"

commit() { # repo rev
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]])' \
        "$tmp/expect/commits.json" "$1" "$2"
}
requests() { # count logged requests whose path matches a regex
    grep -c "\"path\": \"$1" "$tmp/log"
}
pull() { # args...: runs basalt pull, output in $tmp/out and $tmp/err, status in $rc
    "$BIN" pull "$@" --data "$data" > "$tmp/out" 2> "$tmp/err"; rc=$?
}
same_files() { # snapshot-dir expect-dir files...
    s=$1 e=$2; shift 2
    for f in "$@"; do cmp -s "$s/$f" "$e/$f" || return 1; done
}
error_says() { # the pull failed and its last stderr line (the error) matches
    [ "$rc" = 1 ] && tail -n 1 "$tmp/err" | grep -q "$1"
}

# --- a whole repo: the model files land in the huggingface_hub layout
tiny=$(commit acme/tiny main)
snap="$cache/models--acme--tiny/snapshots/$tiny"
pull acme/tiny
check pull_ok sh -c "[ $rc = 0 ] && [ \"\$(cat '$tmp/out')\" = '$snap' ]"
check pull_files_match same_files "$snap" "$tmp/expect/acme/tiny" config.json tokenizer.json model.safetensors
check pull_skips_other_formats sh -c "[ \$(ls '$snap' | wc -l) = 3 ] && [ ! -e '$snap/original' ] && [ ! -e '$snap/pytorch_model.bin' ]"
lfs_sha=$(sha256sum "$tmp/expect/acme/tiny/model.safetensors" | cut -d' ' -f1)
check pull_blob_layout sh -c "[ \"\$(readlink '$snap/model.safetensors')\" = ../../blobs/$lfs_sha ] && [ -f '$cache/models--acme--tiny/blobs/$lfs_sha' ]"
check pull_ref_main sh -c "[ \"\$(cat '$cache/models--acme--tiny/refs/main')\" = $tiny ]"
check pull_no_incomplete sh -c "[ -z \"\$(find '$cache' -name '*.incomplete')\" ]"
check pull_plain_progress sh -c "grep -q '^basalt pull: model.safetensors' '$tmp/err' && ! grep -q \"\$(printf '\r')\" '$tmp/err'"

# --- again: one API call, no file downloaded
before=$(grep -c . "$tmp/log")
pull acme/tiny
after=$(grep -c . "$tmp/log")
check pull_again_downloads_nothing sh -c "[ $rc = 0 ] && [ $((after - before)) = 1 ] && grep -q '0 files downloaded' '$tmp/err'"

# --- a revision: resolved to its commit, refs/<rev> written, shared blobs reused
v1=$(commit acme/tiny v1)
cdn_before=$(requests /cdn/)
pull acme/tiny --revision v1
check revision_commit sh -c "[ $rc = 0 ] && [ \"\$(cat '$tmp/out')\" = '$cache/models--acme--tiny/snapshots/$v1' ] && [ \"\$(cat '$cache/models--acme--tiny/refs/v1')\" = $v1 ]"
check revision_reuses_blob [ "$(requests /cdn/)" = "$cdn_before" ]
check revision_snapshot_kept [ "$(cat "$cache/models--acme--tiny/refs/main")" = "$tiny" ]
"$BIN" pull acme/tiny@v1 --revision v2 --data "$data" > /dev/null 2> "$tmp/err"; rc=$?
check revision_conflict sh -c "[ $rc = 2 ] && grep -q 'v2' '$tmp/err'"

# --- resume: the first transfer dies half way; the retry asks for the rest
pull acme/flaky
flaky=$(commit acme/flaky main)
check resume_ok sh -c "[ $rc = 0 ] && cmp -s '$cache/models--acme--flaky/snapshots/$flaky/model.safetensors' '$tmp/expect/acme/flaky/model.safetensors'"
check resume_used_range grep -q '"path": "/cdn/[0-9a-f]*", "host": "[^"]*", "range": "bytes=150000-"' "$tmp/log"

# --- a server that ignores Range: the partial file is restarted cleanly
pull acme/norange
norange=$(commit acme/norange main)
check norange_restarts sh -c "[ $rc = 0 ] && cmp -s '$cache/models--acme--norange/snapshots/$norange/model.safetensors' '$tmp/expect/acme/norange/model.safetensors'"

# --- checksum mismatch: an error, and nothing in snapshots or half-written
pull acme/badsum
check badsum_error error_says 'sha256 mismatch'
check badsum_nothing_left sh -c "[ ! -e '$cache/models--acme--badsum/snapshots' ] && [ -z \"\$(find '$cache/models--acme--badsum' -name '*.incomplete')\" ] && [ ! -e '$cache/models--acme--badsum/refs/main' ]"

# --- gated: 401 names HF_TOKEN; with it, the hub gets the bearer token and
# the CDN (another host) does not
pull acme/gated
check gated_needs_token error_says 'HF_TOKEN'
HF_TOKEN=hf_wrong pull acme/gated
check gated_wrong_token error_says 'HF_TOKEN was refused'
HF_TOKEN=hf_secret pull acme/gated
check gated_with_token sh -c "[ $rc = 0 ] && grep '/acme/gated/resolve/' '$tmp/log' | tail -1 | grep -q '\"auth\": \"Bearer hf_secret\"'"
gated_sha=$(sha256sum "$tmp/expect/acme/gated/model.safetensors" | cut -d' ' -f1)
check gated_token_not_sent_to_cdn sh -c "grep '/cdn/$gated_sha' '$tmp/log' | grep -q '\"auth\": \"\"' && ! grep '/cdn/$gated_sha' '$tmp/log' | grep -q Bearer"

# --- missing repo, revision and file
pull acme/nope
check missing_repo sh -c "[ $rc = 1 ] && [ \$(wc -l < '$tmp/err') = 1 ] && grep -q 'acme/nope@main: not found: HTTP 404' '$tmp/err'"
pull acme/tiny@nope
check missing_revision error_says 'revision not found'

# --- a GGUF spec takes that file only; a whole-repo pull of a GGUF repo says how
pull acme/ggufs:m.Q8_0.gguf
gg=$(commit acme/ggufs main)
check gguf_ok sh -c "[ $rc = 0 ] && [ \"\$(cat '$tmp/out')\" = '$cache/models--acme--ggufs/snapshots/$gg/m.Q8_0.gguf' ] && cmp -s '$cache/models--acme--ggufs/snapshots/$gg/m.Q8_0.gguf' '$tmp/expect/acme/ggufs/m.Q8_0.gguf'"
check gguf_only_that_file sh -c "[ \"\$(ls '$cache/models--acme--ggufs/snapshots/$gg')\" = m.Q8_0.gguf ] && [ \$(ls '$cache/models--acme--ggufs/blobs' | wc -l) = 1 ]"
pull acme/ggufs:missing.gguf
check gguf_missing_lists_files error_says 'm.Q4_K_M.gguf'
pull acme/ggufs
check gguf_repo_suggests_file error_says 'acme/ggufs:FILE'

# --- resume across runs: an .incomplete blob left by an interrupted pull
q4_sha=$(sha256sum "$tmp/expect/acme/ggufs/m.Q4_K_M.gguf" | cut -d' ' -f1)
mkdir -p "$cache/models--acme--ggufs/blobs"
head -c 10000 "$tmp/expect/acme/ggufs/m.Q4_K_M.gguf" > "$cache/models--acme--ggufs/blobs/$q4_sha.incomplete"
pull acme/ggufs:m.Q4_K_M.gguf
check resume_incomplete_file sh -c "[ $rc = 0 ] && cmp -s \"\$(cat '$tmp/out')\" '$tmp/expect/acme/ggufs/m.Q4_K_M.gguf' && grep '/cdn/$q4_sha' '$tmp/log' | grep -q '\"range\": \"bytes=10000-\"' && [ ! -e '$cache/models--acme--ggufs/blobs/$q4_sha.incomplete' ]"

# --- a hub that lists "../x" gets nothing written
pull acme/evil
check unsafe_name_refused sh -c "[ $rc = 1 ] && grep -q 'unsafe file name' '$tmp/err' && [ ! -e '$cache/models--acme--evil/snapshots' ] && [ ! -e '$cache/models--acme--evil/x' ] && [ ! -e '$cache/x' ]"

# --- transient 503 on the file list: retried
pull acme/busy
check retries_5xx sh -c "[ $rc = 0 ] && [ $(requests /api/models/acme/busy) = 2 ]"

# --- bad specs are usage errors; the cache defaults to $BASALT_DATA/models
"$BIN" pull ../etc > /dev/null 2> "$tmp/err"; rc=$?
check bad_spec sh -c "[ $rc = 2 ] && grep -q 'invalid repo id' '$tmp/err'"
"$BIN" pull acme/x:../../y.gguf > /dev/null 2> "$tmp/err"; rc=$?
check bad_file_spec sh -c "[ $rc = 2 ] && grep -q 'invalid file name' '$tmp/err'"
BASALT_DATA="$tmp/other" "$BIN" pull acme/busy > "$tmp/out" 2> /dev/null; rc=$?
check basalt_data_env sh -c "[ $rc = 0 ] && grep -q '^$tmp/other/models/models--acme--busy/snapshots/' '$tmp/out'"
"$BIN" pull --help > "$tmp/out" 2>&1
check help_pull sh -c "grep -q 'usage: basalt pull' '$tmp/out' && grep -q HF_TOKEN '$tmp/out' && grep -q -- --revision '$tmp/out'"

# --- `basalt serve --model NAME=ORG/REPO` serves what pull put in the cache
serve_models() { # GET /v1/models from the server whose log is $tmp/serve.log; prints the ids
    "$PY" - "$tmp/serve.log" <<'PYEOF'
import json, re, sys, time, urllib.request
for _ in range(300):
    m = re.search(r"listening on (http://\S+)", open(sys.argv[1]).read())
    if m:
        break
    time.sleep(0.05)
else:
    sys.exit("no 'listening on' line")
body = json.load(urllib.request.urlopen(m.group(1) + "/v1/models", timeout=10))
print(" ".join(d["id"] for d in body["data"]))
PYEOF
}
if [ -z "$chat_repo" ]; then
    echo "SKIP serve_pulled_model: cannot build the test model ($(tail -n 1 "$tmp/make_model.err"))"
else
    pull acme/chat
    check pull_chat_model [ "$rc" = 0 ]
    "$BIN" serve --model m=acme/chat --port 0 --threads 1 --data "$data" > "$tmp/serve.log" 2>&1 &
    serve=$!
    ids=$(serve_models 2> "$tmp/serve_client.err")
    kill "$serve" 2>/dev/null; wait "$serve" 2>/dev/null; serve=
    check serve_finds_pulled_model sh -c "[ '$ids' = m ] && grep -q 'models--acme--chat/snapshots/' '$tmp/serve.log'"
    "$BIN" serve --model acme/chat --port 0 --threads 1 --data "$data" > "$tmp/serve.log" 2>&1 &
    serve=$!
    ids=$(serve_models 2> "$tmp/serve_client.err")
    kill "$serve" 2>/dev/null; wait "$serve" 2>/dev/null; serve=
    check serve_bare_hub_name_is_the_id [ "$ids" = acme/chat ]
    "$BIN" serve --model m=acme/absent --port 0 --data "$data" > /dev/null 2> "$tmp/err"; rc=$?
    check serve_unpulled_model_says_pull sh -c "[ $rc = 1 ] && grep -q 'run \`basalt pull acme/absent\`' '$tmp/err'"
fi
