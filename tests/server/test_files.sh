#!/bin/sh
# The Files API end to end: a real `basalt serve` (the random demo model; no
# weights needed) on a free loopback port, driven with curl -F multipart
# uploads: upload/list/retrieve/content/delete, cursor paging, every upload
# refusal (size limit, UTF-8, empty, purpose, fields, malformed bodies) with
# nothing left on disk, and files surviving a restart.  Uses $BASALT_BIN.
. tests/support/lib.sh

CHECK_BODY=400

if [ ! -x "$BIN" ]; then echo "SKIP files: $BIN not built"; exit 0; fi
if ! command -v curl > /dev/null; then echo "SKIP files: curl not installed"; exit 0; fi
data="$tmp/data"

start() { start_serve "$tmp/serve.log" --port 0 --threads 1 --max-file-mb 1 --data "$data"; }

req() { # curl args...: body in $tmp/body, HTTP status in $tmp/status
    curl -s -o "$tmp/body" -w '%{http_code}' "$@" > "$tmp/status"
}
no_partials() { [ -z "$(ls "$data/files" | grep -v '^file-[0-9a-f]*$')" ]; }
blob_count() { ls "$data/files" | wc -l | tr -d ' '; }

start
printf '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}\n' > "$tmp/train.jsonl"
size1=$(wc -c < "$tmp/train.jsonl" | tr -d ' ')

# ---- upload, retrieve, content
req -F purpose=fine-tune -F "file=@$tmp/train.jsonl" "$url/v1/files"
check upload_status status_is 200
check upload_object json_ok 'j["object"] == "file" and j["id"].startswith("file-") and j["bytes"] == '"$size1"' and j["filename"] == "train.jsonl" and j["purpose"] == "fine-tune" and j["status"] == "processed" and isinstance(j["created_at"], int) and j["expires_at"] is None'
id1=$(json_get 'j["id"]')
check upload_blob cmp -s "$data/files/$id1" "$tmp/train.jsonl"
want_sha=$("$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$tmp/train.jsonl")
got_sha=$("$PY" -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select sha256 from files where id=?", (sys.argv[2],)).fetchone()[0])' "$data/basalt.db" "$id1")
check upload_sha256 [ "$got_sha" = "$want_sha" ]

# purpose after the file part; a binary user_data file is fine
head -c 3000 /dev/urandom > "$tmp/blob.bin"
req -F "file=@$tmp/blob.bin" -F purpose=user_data "$url/v1/files"
check upload_binary_purpose_last json_ok 'j["purpose"] == "user_data" and j["bytes"] == 3000 and j["filename"] == "blob.bin"'
id2=$(json_get 'j["id"]')
printf '{"custom_id":"1"}\n' > "$tmp/batch.jsonl"
req -F purpose=batch -F "file=@$tmp/batch.jsonl" "$url/v1/files"
id3=$(json_get 'j["id"]')

req "$url/v1/files/$id1"
check retrieve json_ok "j['id'] == '$id1' and j['bytes'] == $size1 and j['object'] == 'file'"
curl -s -o "$tmp/content" "$url/v1/files/$id2/content"
check content_bytes cmp -s "$tmp/content" "$tmp/blob.bin"

# ---- list: newest first, cursor pages, order, purpose
req "$url/v1/files"
check list_all json_ok "j['object'] == 'list' and [f['id'] for f in j['data']] == ['$id3', '$id2', '$id1'] and j['has_more'] is False and j['first_id'] == '$id3' and j['last_id'] == '$id1'"
req "$url/v1/files?limit=2"
check list_page1 json_ok "[f['id'] for f in j['data']] == ['$id3', '$id2'] and j['has_more'] is True"
req "$url/v1/files?limit=2&after=$id2"
check list_page2 json_ok "[f['id'] for f in j['data']] == ['$id1'] and j['has_more'] is False"
req "$url/v1/files?order=asc&limit=10"
check list_asc json_ok "[f['id'] for f in j['data']] == ['$id1', '$id2', '$id3']"
req "$url/v1/files?purpose=batch"
check list_purpose json_ok "[f['id'] for f in j['data']] == ['$id3']"
req "$url/v1/files?purpose=evals"
check list_empty json_ok "j['data'] == [] and j['first_id'] is None and j['has_more'] is False"
req "$url/v1/files?limit=0"
check list_bad_limit json_ok "j['error']['param'] == 'limit'"
req "$url/v1/files?order=sideways"
check list_bad_order json_ok "j['error']['param'] == 'order'"
req "$url/v1/files?after=file-nope"
check list_bad_after status_is 400

# ---- unknown ids, delete
req "$url/v1/files/file-nope"
check get_unknown_404 status_is 404
check get_unknown_error json_ok "j['error']['param'] == 'id' and 'file-nope' in j['error']['message'] and j['error']['type'] == 'not_found_error'"
req "$url/v1/files/file-nope/content"
check content_unknown_404 status_is 404
req "$url/v1/files/$id1/other"
check bad_subpath_404 status_is 404
req -X DELETE "$url/v1/files/$id3"
check delete json_ok "j == {'id': '$id3', 'object': 'file', 'deleted': True}"
check delete_blob [ ! -e "$data/files/$id3" ]
req "$url/v1/files/$id3"
check get_deleted_404 status_is 404
req -X DELETE "$url/v1/files/$id3"
check delete_twice_404 status_is 404
req -X PUT "$url/v1/files"
check put_405 status_is 405

# ---- refusals: each names its field and leaves nothing on disk
before=$(blob_count)
refuse() { # name status param curl-args...
    name=$1 want=$2 param=$3; shift 3
    req "$@" "$url/v1/files"
    check "$name" status_is "$want"
    if [ -n "$param" ]; then check "${name}_param" json_ok "j['error']['param'] == '$param'"; fi
}
head -c 1100000 /dev/zero > "$tmp/big.bin"
refuse too_large 413 file -F purpose=user_data -F "file=@$tmp/big.bin"
printf '{"a":"\377"}\n' > "$tmp/latin1.jsonl"
refuse not_utf8 400 file -F purpose=fine-tune -F "file=@$tmp/latin1.jsonl"
: > "$tmp/empty.jsonl"
refuse empty 400 file -F purpose=fine-tune -F "file=@$tmp/empty.jsonl"
refuse no_purpose 400 purpose -F "file=@$tmp/train.jsonl"
refuse bad_purpose 400 purpose -F purpose=fine-tune-results -F "file=@$tmp/train.jsonl"
refuse no_file 400 file -F purpose=fine-tune
cp "$tmp/train.jsonl" "$tmp/train.txt"
refuse not_jsonl 400 file -F purpose=fine-tune -F "file=@$tmp/train.txt"
refuse unknown_field 400 model -F purpose=fine-tune -F model=x -F "file=@$tmp/train.jsonl"
refuse expires_after 400 expires_after -F purpose=batch -F 'expires_after[anchor]=created_at' -F "file=@$tmp/batch.jsonl"
refuse two_files 400 file -F purpose=user_data -F "file=@$tmp/blob.bin" -F "file=@$tmp/blob.bin"
refuse json_body 400 "" -H 'Content-Type: application/json' -d '{"purpose":"fine-tune"}'
printf -- '--XX\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n--XX\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\nabc' > "$tmp/cut.body"
refuse cut_short 400 "" -H 'Content-Type: multipart/form-data; boundary=XX' --data-binary "@$tmp/cut.body"
refuse no_boundary 400 "" -H 'Content-Type: multipart/form-data' --data-binary "@$tmp/cut.body"
check refusals_leave_nothing [ "$(blob_count)" = "$before" ]
check no_partial_uploads no_partials

# ---- a restart keeps files and their bytes
stop_serve
start
req "$url/v1/files?order=asc"
check restart_list json_ok "[f['id'] for f in j['data']] == ['$id1', '$id2']"
curl -s -o "$tmp/content" "$url/v1/files/$id1/content"
check restart_content cmp -s "$tmp/content" "$tmp/train.jsonl"
stop_serve
