#!/usr/bin/env bash
# rustedctl against etcdctl: the commands in commands.txt run through Debian's etcdctl 3.4 and
# through rustedctl, each against a fresh rusted, and the outputs (ids, sizes, timings and
# versions normalized by ../compat/normalize.py) must be equal.
#   RUSTED_BIN=... RUSTEDCTL_BIN=... compare.sh      (ETCDCTL_BIN: default etcdctl)
# With SERVER=etcd both clients run against Debian's etcd 3.4 instead (ETCD_BIN: default etcd),
# which shows rustedctl is a true etcd client; lines starting with "? " run only against rusted
# (what etcdctl itself cannot do against etcd 3.4, and the minute-long check perf).
# etcdctl's own client log lines ({"level":"warn",...} from its retry interceptor) are not
# command output and are dropped before comparing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
RUSTED_BIN=${RUSTED_BIN:?RUSTED_BIN must name the rusted binary}
RUSTEDCTL_BIN=${RUSTEDCTL_BIN:?RUSTEDCTL_BIN must name the rustedctl binary}
ETCDCTL_BIN=${ETCDCTL_BIN:-etcdctl}
# Absolute, since the commands run in the work directory.
RUSTED_BIN=$(realpath "$RUSTED_BIN")
RUSTEDCTL_BIN=$(realpath "$RUSTEDCTL_BIN")
command -v "$ETCDCTL_BIN" >/dev/null && ETCDCTL_BIN=$(command -v "$ETCDCTL_BIN")
PYTHON=${PYTHON:-python3}
command -v "$ETCDCTL_BIN" >/dev/null || { echo "ctl: etcdctl not found (apt-get install etcd-client)" >&2; exit 2; }
ADDR=${ADDR:-127.0.0.4}
WORK=$(mktemp -d /tmp/rustedctl-compare.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

SERVER=${SERVER:-rusted}
ETCD_BIN=${ETCD_BIN:-etcd}
start() {
    rm -rf "$WORK/data"
    local bin=$RUSTED_BIN
    [ "$SERVER" = etcd ] && bin=$ETCD_BIN
    "$bin" --name default --data-dir "$WORK/data" \
        --listen-client-urls "http://$ADDR:2379" --advertise-client-urls "http://$ADDR:2379" \
        --listen-peer-urls "http://$ADDR:2380" --initial-advertise-peer-urls "http://$ADDR:2380" \
        --initial-cluster "default=http://$ADDR:2380" >"$WORK/server-$1.log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        ETCDCTL_API=3 "$ETCDCTL_BIN" --endpoints=$ADDR:2379 endpoint health >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "ctl: $SERVER did not start" >&2; cat "$WORK/server-$1.log" >&2; exit 1
}
stop() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=""; }

drive() { # $1 = the client binary
    # A line "command < file" reads stdin from that file (next to this script).
    # A line "@VAR command" also keeps the ID it prints in $VAR, for the lines after it (as
    # "$VAR"): the member ID of "Member <id> added", else the first 16-hex-digit number.
    # A line "~N command" runs under `timeout -s INT N` (for commands that run until stopped).
    # A line "! shell" runs the shell line with $CTL set to the client with --endpoints, and
    # $BIN to the bare client (exit code printed).
    # Commands run in the work directory, so relative file names land there.
    cd "$WORK"
    export ETCDCTL_API=3
    BIN=$1
    CTL="$1 --endpoints=$ADDR:2379"
    while IFS= read -r line; do
        [ -z "$line" ] && continue
        [[ $line == \#* ]] && continue
        if [[ $line =~ ^\?\ (.*)$ ]]; then
            [ "$SERVER" = etcd ] && continue
            line=${BASH_REMATCH[1]}
        fi
        echo "### ctl $line"
        if [[ $line =~ ^!\ (.*)$ ]]; then
            (eval "${BASH_REMATCH[1]}") 2>&1 | grep -v '^{"level":'
            echo "exit=${PIPESTATUS[0]}"
            continue
        fi
        var=""
        if [[ $line =~ ^@([A-Z0-9]+)\ (.*)$ ]]; then
            var=${BASH_REMATCH[1]}
            line=${BASH_REMATCH[2]}
        fi
        limit=()
        if [[ $line =~ ^~([0-9]+)\ (.*)$ ]]; then
            limit=(timeout -s INT "${BASH_REMATCH[1]}")
            line=${BASH_REMATCH[2]}
        fi
        input=/dev/null
        if [[ $line =~ ^(.*)\ \<\ ([a-z0-9.]+)$ ]]; then
            line=${BASH_REMATCH[1]}
            input=$here/${BASH_REMATCH[2]}
        fi
        eval "set -- $line"
        if [ -n "$var" ]; then
            out=$("$BIN" --endpoints=$ADDR:2379 "$@" </dev/null 2>&1)
            echo "$out" | grep -v '^{"level":'
            id=$(sed -nE 's/^Member +([0-9a-f]+) added.*/\1/p' <<<"$out" | head -1)
            [ -z "$id" ] && id=$(grep -oE '[0-9a-f]{16}' <<<"$out" | head -1)
            printf -v "$var" '%s' "$id"
            echo "exit=0"
            continue
        fi
        "${limit[@]}" "$BIN" --endpoints=$ADDR:2379 "$@" <"$input" 2>&1 | grep -v '^{"level":'
        echo "exit=${PIPESTATUS[0]}"
    done <"$here/commands.txt"
}

for who in etcdctl rustedctl; do
    CLIENT=$ETCDCTL_BIN; [ $who = rustedctl ] && CLIENT=$RUSTEDCTL_BIN
    start $who
    (drive "$CLIENT") >"$WORK/$who.raw"
    rm -f "$WORK"/*.db "$WORK"/*.part
    stop
    "$PYTHON" "$here/../compat/normalize.py" <"$WORK/$who.raw" >"$WORK/$who.out"
done
if diff -u "$WORK/etcdctl.out" "$WORK/rustedctl.out"; then
    echo "ctl: rustedctl and etcdctl print the same for $(grep -c '^### ' "$WORK/etcdctl.out") commands against $SERVER"
else
    echo "ctl: DIFFERENT" >&2
    exit 1
fi
