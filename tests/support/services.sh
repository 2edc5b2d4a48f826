# tests/support/services.sh — sourced by tests/run.sh (or by hand): starts a
# throwaway PostgreSQL cluster and redis-server on free 127.0.0.1 ports for
# the tests that need them, and exports
#   BASALT_TEST_PG_URL=postgres://postgres@127.0.0.1:PORT/basalt_test
#   BASALT_TEST_REDIS_URL=redis://127.0.0.1:PORT
# The caller's EXIT trap calls basalt_services_stop, which stops both and
# removes their directory.  Without the binaries it exports nothing and the
# tests needing them SKIP.  POSIX sh; never exits the sourcing shell.

basalt_services_dir=
basalt_services_pgbin=

basalt_services_stop() {
    [ -n "$basalt_services_dir" ] || return 0
    if [ -f "$basalt_services_dir/pg/postmaster.pid" ]; then
        $basalt_services_as_pg "$basalt_services_pgbin/pg_ctl" -D "$basalt_services_dir/pg" -m immediate -w stop \
            >/dev/null 2>&1
    fi
    if [ -f "$basalt_services_dir/redis.pid" ]; then
        kill "$(cat "$basalt_services_dir/redis.pid")" 2>/dev/null
        # Wait (up to 5 s) so the directory is not removed under it.
        i=0
        while [ $i -lt 50 ] && kill -0 "$(cat "$basalt_services_dir/redis.pid" 2>/dev/null)" 2>/dev/null; do
            sleep 0.1; i=$((i + 1))
        done
    fi
    rm -rf "$basalt_services_dir"
    basalt_services_dir=
    unset BASALT_TEST_PG_URL BASALT_TEST_REDIS_URL
}

# A port nothing listens on now (the kernel picks it; awk's guess without
# Python, and a start that loses the race simply fails and is reported).
basalt_services_port() {
    "${BASALT_PYTHON:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
        2>/dev/null || awk 'BEGIN { srand(); print 20000 + int(rand() * 40000) }'
}

basalt_services_start() {
    basalt_services_pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ ! -x "$basalt_services_pgbin/initdb" ] || [ ! -x "$basalt_services_pgbin/pg_ctl" ] ||
        ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        echo "services: PostgreSQL (initdb, pg_ctl) or redis-server not installed; tests needing them will SKIP"
        return 0
    fi
    # PostgreSQL refuses to run as root: run it as the postgres user then.
    basalt_services_as_pg=
    if [ "$(id -u)" = 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            echo "services: running as root without a postgres user; tests needing PostgreSQL/Redis will SKIP"
            return 0
        fi
        basalt_services_as_pg="runuser -u postgres --"
    fi
    basalt_services_dir=$(mktemp -d /tmp/basalt_services.XXXXXX) || return 0
    [ -z "$basalt_services_as_pg" ] || chown postgres "$basalt_services_dir"
    d=$basalt_services_dir
    pg_port=$(basalt_services_port)
    redis_port=$(basalt_services_port)
    # Trust auth on the loopback only; fsync off: the data is thrown away.
    if ! $basalt_services_as_pg "$basalt_services_pgbin/initdb" -D "$d/pg" -U postgres -A trust -E UTF8 --no-sync \
            >"$d/initdb.log" 2>&1 ||
        ! $basalt_services_as_pg "$basalt_services_pgbin/pg_ctl" -D "$d/pg" -l "$d/pg.log" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $d -c fsync=off -c max_connections=50" start \
            >/dev/null 2>&1 ||
        ! "$basalt_services_pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres basalt_test >/dev/null 2>&1; then
        echo "services: PostgreSQL did not start (see below); tests needing it will SKIP"
        tail -n 5 "$d/initdb.log" "$d/pg.log" 2>/dev/null
        basalt_services_stop
        return 0
    fi
    redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --daemonize yes \
        --pidfile "$d/redis.pid" --logfile "$d/redis.log" --dir "$d" >/dev/null 2>&1
    i=0
    while [ $i -lt 50 ] && [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" != PONG ]; do
        sleep 0.1; i=$((i + 1))
    done
    if [ $i -ge 50 ]; then
        echo "services: redis-server did not start; tests needing it will SKIP"
        tail -n 5 "$d/redis.log" 2>/dev/null
        basalt_services_stop
        return 0
    fi
    export BASALT_TEST_PG_URL="postgres://postgres@127.0.0.1:$pg_port/basalt_test"
    export BASALT_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
    echo "services: PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port"
}

basalt_services_start
