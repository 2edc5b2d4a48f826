#!/bin/sh
# Run the whole test suite: every C test binary under BUILD/tests and every
# executable tests/*/test_*.sh script.  Each prints PASS/FAIL/SKIP lines; a
# binary that exits non-zero without printing FAIL (a crash) counts as one
# failure.  Ends with the line "N passed, N failed".
#
#   tests/run.sh BUILD_DIR      (BASALT_UNIT_ONLY=1 skips the scripts;
#                                BASALT_NO_SERVICES=1 starts no PostgreSQL/Redis)
BUILD=${1:-build}
export BASALT_BIN="$PWD/$BUILD/basalt"
export BASALT_PYTHON="${BASALT_PYTHON:-/usr/bin/python3}"
log=$(mktemp)
services_stop=:
if [ "${BASALT_NO_SERVICES:-}" != 1 ]; then
    . tests/support/services.sh
    services_stop=basalt_services_stop
fi
trap 'rm -f "$log"; $services_stop' EXIT
# So the EXIT trap (and with it the services' cleanup) runs on ^C too.
trap 'exit 130' INT TERM
pass=0 fail=0 skip=0

run_one() {
    name=$1; shift
    out=$("$@" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^(FAIL|SKIP) ' | sed "s|^|[$name] |"
    p=$(printf '%s\n' "$out" | grep -c '^PASS ')
    f=$(printf '%s\n' "$out" | grep -c '^FAIL ')
    s=$(printf '%s\n' "$out" | grep -c '^SKIP ')
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        f=1
        echo "[$name] FAIL exited with status $rc"
    fi
    if [ "$f" != 0 ]; then printf '%s\n' "$out" | grep -v '^PASS ' | sed "s|^|    |" | tail -40; fi
    echo "$p $f $s" >> "$log"
    printf '%-40s %3d passed %3d failed %3d skipped\n' "$name" "$p" "$f" "$s"
}

for t in $(find "$BUILD/tests" -type f -perm -u+x -name 'test_*' 2>/dev/null | sort); do
    run_one "$(echo "$t" | sed "s|^$BUILD/||")" "$t"
done
if [ -z "$BASALT_UNIT_ONLY" ]; then
    for t in $(find tests -name node_modules -prune -o -type f -name 'test_*.sh' -print | sort); do
        run_one "$t" sh "$t"
    done
fi

pass=$(awk '{s+=$1} END {print s+0}' "$log")
fail=$(awk '{s+=$2} END {print s+0}' "$log")
skip=$(awk '{s+=$3} END {print s+0}' "$log")
echo "($skip skipped)"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
