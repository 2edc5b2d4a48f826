#!/bin/sh
# Two basalt replicas sharing one PostgreSQL store and one Redis limiter
# (tests/support/services.sh starts both): a key created on replica A works
# on B after B's key refresh, a revocation on A is enforced on B within a
# few seconds, and one key's RPM is enforced jointly — requests split over
# both replicas admit exactly the limit.
. tests/support/lib.sh

if [ ! -x "$BIN" ]; then echo "SKIP replicas: $BIN not built"; exit 0; fi
if [ -z "$BASALT_TEST_PG_URL" ] || [ -z "$BASALT_TEST_REDIS_URL" ]; then
    echo "SKIP replicas: BASALT_TEST_PG_URL / BASALT_TEST_REDIS_URL not set (tests/support/services.sh starts them)"
    exit 0
fi
cat > "$tmp/gw.yaml" <<EOF
store: $BASALT_TEST_PG_URL
ratelimit: $BASALT_TEST_REDIS_URL
EOF
admin=$("$BIN" keys create --name admin --scopes admin --store "$BASALT_TEST_PG_URL" --data "$tmp/cli" | head -1)
check admin_key_in_pg [ "${admin#sk-basalt-}" != "$admin" ]

start() { # name: url in $url_<name>, pid in $pid_<name>
    "$BIN" serve --port 0 --threads 1 --config "$tmp/gw.yaml" --data "$tmp/$1" > "$tmp/$1.log" 2>&1 &
    eval "pid_$1=$!"
    for _ in $(seq 150); do
        u=$(sed -n 's/.*listening on \(http:[0-9.:/]*\).*/\1/p' "$tmp/$1.log" | head -1)
        [ -n "$u" ] && { eval "url_$1=$u"; return 0; }
        sleep 0.1
    done
    fail "start_$1" "$(tail -5 "$tmp/$1.log")"
    kill "$pid_a" "$pid_b" 2>/dev/null
    exit 1
}
pid_a= pid_b=
trap 'kill $pid_a $pid_b 2>/dev/null; rm -rf "$tmp"' EXIT
start a
start b

code() { # key, url: the status
    curl -s -o "$tmp/body" -w '%{http_code}' -H "Authorization: Bearer $1" "$2"
}
user=$(curl -s -H "Authorization: Bearer $admin" "$url_a/v1/admin/keys" -d '{"name":"u","rpm":40}' |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
uid=$(echo "$user" | sed 's/^sk-basalt-\([0-9a-f]*\)-.*/key-\1/')
seen=
for _ in $(seq 50); do
    [ "$(code "$user" "$url_b/v1/models")" = 200 ] && { seen=1; break; }
    sleep 0.2
done
check key_from_a_works_on_b [ -n "$seen" ]

# One RPM quota across both replicas: 100 requests alternating A and B.
while [ "$(date +%S | sed 's/^0//')" -gt 30 ]; do sleep 1; done
"$PY" - "$url_a" "$url_b" "$user" > "$tmp/burst" <<'EOF'
import json, sys, urllib.request, urllib.error
from concurrent.futures import ThreadPoolExecutor
a, b, key = sys.argv[1:4]
body = json.dumps({"model": "basalt-demo-random", "prompt": "hi", "max_tokens": 1}).encode()
def one(i):
    rq = urllib.request.Request((a, b)[i % 2] + "/v1/completions", body, {"Authorization": "Bearer " + key})
    try:
        with urllib.request.urlopen(rq, timeout=120) as r:
            return r.status, ""
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)["error"]["message"]
with ThreadPoolExecutor(16) as ex:
    res = list(ex.map(one, range(100)))
print(sum(1 for c, m in res if c == 429 and m.startswith("Rate limit")))
EOF
check joint_rpm_exact [ "$(cat "$tmp/burst")" = 60 ]

curl -s -o /dev/null -X DELETE -H "Authorization: Bearer $admin" "$url_a/v1/admin/keys/$uid"
gone=
for _ in $(seq 50); do
    [ "$(code "$user" "$url_b/v1/models")" = 401 ] && { gone=1; break; }
    sleep 0.2
done
check revocation_on_a_enforced_on_b [ -n "$gone" ]
