#!/bin/sh
# Security checks over every route of server.c's table: no key, a wrong
# key, a revoked key -> 401; a key without the route's scope -> 403;
# another tenant's ids -> 404 with nothing of theirs in the body; and hostile
# input — oversized bodies (413), CR/LF in header values, path traversal in
# file ids, SQL metacharacters in every id and query parameter — refused or
# harmless (a 4xx, never a 5xx, never data).
. tests/support/lib.sh

if [ ! -x "$BIN" ]; then echo "SKIP security: $BIN not built"; exit 0; fi
if ! command -v curl > /dev/null; then echo "SKIP security: curl not installed"; exit 0; fi
data="$tmp/data"
admin=$("$BIN" keys create --name admin --scopes admin --data "$data" | head -1)
start_serve "$tmp/serve.log" --port 0 --threads 1 --max-body 1 --data "$data"

code() { # key ('' none), curl args...: the status; body in $tmp/body
    req "$@"
    cat "$tmp/status"
}
infer=$(mkkey k ',"scopes":["inference"]')
tenantA=$(mkkey k ',"scopes":["inference","files","fine-tune"]')
tenantB=$(mkkey k ',"scopes":["inference","files","fine-tune"]')
revoked=$(mkkey k '')
revoked_id=$(echo "$revoked" | sed 's/^sk-basalt-\([0-9a-f]*\)-.*/key-\1/')
curl -s -o /dev/null -X DELETE -H "Authorization: Bearer $admin" "$url/v1/admin/keys/$revoked_id"
wrong=$(echo "$tenantA" | sed 's/....$/zzzz/')

# Every route of the table (server.c routes[]) with its scope.
cat > "$tmp/routes" <<'EOF'
GET /v1/models inference
GET /v1/models/x inference
POST /tokenize inference
POST /detokenize inference
GET /metrics admin
POST /v1/admin/reload admin
POST /v1/admin/keys admin
GET /v1/admin/keys admin
GET /v1/admin/keys/x admin
POST /v1/admin/keys/x admin
DELETE /v1/admin/keys/x admin
GET /v1/admin/usage admin
GET /v1/admin/audit admin
POST /v1/guardrails/x inference
POST /v1/batches inference
GET /v1/batches inference
GET /v1/batches/x inference
POST /v1/batches/x inference
POST /v1/chat/completions inference
POST /v1/responses inference
GET /v1/responses/x inference
DELETE /v1/responses/x inference
POST /v1/completions inference
POST /v1/embeddings inference
POST /v1/files files
GET /v1/files files
GET /v1/files/x files
DELETE /v1/files/x files
POST /v1/load_lora_adapter admin
POST /v1/unload_lora_adapter admin
POST /v1/fine_tuning/jobs fine-tune
GET /v1/fine_tuning/jobs fine-tune
GET /v1/fine_tuning/jobs/x fine-tune
POST /v1/fine_tuning/jobs/x fine-tune
POST /v1/fine_tuning/alpha/graders/validate fine-tune
POST /v1/fine_tuning/alpha/graders/run fine-tune
POST /v1/evals inference
GET /v1/evals inference
GET /v1/evals/x inference
POST /v1/evals/x inference
DELETE /v1/evals/x inference
EOF
# Every non-public route of server.c is listed above (a new route must be added).
grep '^    {"[A-Z]*", "/' src/server/server.c | awk -F'"' '$4 != "/health" {print $2, $4}' | sort -u > "$tmp/table"
awk '{print $1, $2}' "$tmp/routes" | sed 's#/x$#/*#' | sort -u > "$tmp/listed"
check routes_table_complete cmp -s "$tmp/table" "$tmp/listed"
bad=
while read -r method path scope; do
    for who in none wrong revoked; do
        case $who in none) k= ;; wrong) k=$wrong ;; revoked) k=$revoked ;; esac
        c=$(code "$k" -X "$method" "$url$path" -d '{}')
        if [ "$c" != 401 ] || ! grep -q '"invalid_api_key"' "$tmp/body"; then bad="$bad $who:$method:$path=$c"; fi
    done
    if [ "$scope" != inference ]; then
        c=$(code "$infer" -X "$method" "$url$path" -d '{}')
        if [ "$c" != 403 ]; then bad="$bad scope:$method:$path=$c"; fi
    fi
done < "$tmp/routes"
check every_route_401_403 [ -z "$bad" ]
[ -z "$bad" ] || echo "  refused wrongly:$bad"

# ---- another tenant's objects
printf '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"ok"}]}\n' > "$tmp/t.jsonl"
fileA=$(curl -s -H "Authorization: Bearer $tenantA" -F purpose=fine-tune -F "file=@$tmp/t.jsonl" "$url/v1/files" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
leak=
for spec in "GET /v1/files/$fileA" "GET /v1/files/$fileA/content" "DELETE /v1/files/$fileA" "GET /v1/files" \
            "GET /v1/fine_tuning/jobs"; do
    set -- $spec
    c=$(code "$tenantB" -X "$1" "$url$2")
    case $2 in
    */$fileA*) [ "$c" = 404 ] || leak="$leak $spec=$c" ;; # the 404 names only the id asked for
    *) { [ "$c" = 200 ] && ! grep -q "$fileA" "$tmp/body"; } || leak="$leak $spec=$c" ;;
    esac
done
check other_tenant_nothing_leaked [ -z "$leak" ]
c=$(code "$tenantA" "$url/v1/files/$fileA")
check owner_still_sees_file [ "$c" = 200 ]

# ---- oversized body: 413 before any key or model work
head -c 1100000 /dev/zero | tr '\0' 'a' > "$tmp/big"
c=$(code "$tenantA" -X POST "$url/v1/chat/completions" -H 'Content-Type: application/json' --data-binary "@$tmp/big")
check oversized_413 [ "$c" = 413 ]

# ---- CR/LF in header values: never reflected as a header, never a 5xx
"$PY" - "$url" "$tenantA" > "$tmp/inject" <<'EOF'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
for value in ["Bearer x\r\nX-Injected: yes", "Bearer " + sys.argv[2] + "\rX-Injected: yes", "Bearer \n\n"]:
    s = socket.create_connection((u.hostname, u.port))
    s.sendall(("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: " + value + "\r\nConnection: close\r\n\r\n").encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b: break
        data += b
    head = data.split(b"\r\n\r\n")[0].decode("latin-1")
    print(head.split("\r\n")[0].split(" ")[1] if head else "none", "injected" if "x-injected" in head.lower() else "clean")
EOF
check header_injection_harmless sh -c "! grep -q injected$ '$tmp/inject' || ! grep -vq ' clean$' '$tmp/inject'"
check header_injection_no_5xx sh -c "! grep -q '^5' '$tmp/inject'"

# ---- path traversal and SQL metacharacters in ids and query parameters
harm=
for id in '..%2F..%2Fetc%2Fpasswd' '%2e%2e%2f%2e%2e%2fetc%2fpasswd' '../../etc/passwd' "%27%20OR%201%3D1%20--" \
          "x%27%3B%20DROP%20TABLE%20files%3B--"; do
    for p in "/v1/files/$id" "/v1/files/$id/content" "/v1/fine_tuning/jobs/$id" "/v1/fine_tuning/jobs/$id/events"; do
        c=$(code "$tenantA" "$url$p")
        if grep -q 'root:' "$tmp/body" || [ "$c" -ge 500 ] || [ "$c" = 200 ]; then harm="$harm $p=$c"; fi
    done
    c=$(code "$admin" "$url/v1/admin/keys/$id")
    if [ "$c" -ge 500 ] || [ "$c" = 200 ]; then harm="$harm keys/$id=$c"; fi
done
for q in "after=%27%20OR%201%3D1%20--" "limit=1%20OR%201%3D1" "order=%27%3B--" "purpose=x%27%20OR%20%271%27%3D%271"; do
    c=$(code "$tenantA" "$url/v1/files?$q")
    if [ "$c" -ge 500 ] || grep -q "$fileA" "$tmp/body"; then harm="$harm files?$q=$c"; fi
done
for q in "group_by=key%27%20OR%201%3D1" "from=%27%20OR%201%3D1" "key_id=%27%20OR%20%271%27%3D%271"; do
    c=$(code "$admin" "$url/v1/admin/usage?$q")
    [ "$c" -ge 500 ] && harm="$harm usage?$q=$c"
done
c=$(code "$admin" "$url/v1/admin/audit?after=%27%20OR%201%3D1%20--")
[ "$c" -ge 500 ] && harm="$harm audit=$c"
check hostile_ids_and_queries_harmless [ -z "$harm" ]
[ -z "$harm" ] || echo "  harmful:$harm"
c=$(code "$tenantA" "$url/v1/files")
check files_table_intact sh -c "[ $c = 200 ] && grep -q '$fileA' '$tmp/body'"
