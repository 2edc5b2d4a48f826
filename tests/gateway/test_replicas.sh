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
    u=$(wait_url "$tmp/$1.log" 150) && { eval "url_$1=$u"; return 0; }
    fail "start_$1" "$(tail -5 "$tmp/$1.log")"
    kill "$pid_a" "$pid_b" 2>/dev/null
    exit 1
}
pid_a= pid_b=
trap 'kill $pid_a $pid_b 2>/dev/null; rm -rf "$tmp"' EXIT
start a
start b

code() { # key, url: the status
    req "$1" "$2"
    cat "$tmp/status"
}
url=$url_a
user=$(mkkey u ',"rpm":40')
uid=$(cat "$tmp/id_u")
seen=
for _ in $(seq 50); do
    [ "$(code "$user" "$url_b/v1/models")" = 200 ] && { seen=1; break; }
    sleep 0.2
done
check key_from_a_works_on_b [ -n "$seen" ]

# One RPM quota across both replicas: 100 requests alternating A and B.
fresh_minute 30
"$PY" - "$url_a" "$url_b" "$user" > "$tmp/burst" <<'EOF'
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "support"))
from gwtest import parallel, req, url_port
ports, key = [url_port(u) for u in sys.argv[1:3]], sys.argv[3]
body = {"model": "basalt-demo-random", "prompt": "hi", "max_tokens": 1}
def one(i):
    st, _, j = req(ports[i % 2], "POST", "/v1/completions", body, key, timeout=120)
    return st, "" if st == 200 else j["error"]["message"]
res = parallel(100, one, workers=16)
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
