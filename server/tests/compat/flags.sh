#!/usr/bin/env bash
# Server flags against etcd and rusted, outputs normalized and diffed: Go-style single-dash
# flags, --cors and --host-whitelist on plain HTTP, --enable-grpc-gateway=false,
# --strict-reconfig-check on a fresh member, and the exit codes of command lines etcd refuses
# (unknown flag, bad value, listen URLs without advertise URLs, a variable shadowed by a flag).
#
# Env: RUSTED_BIN (required unless ONLY=etcd), ETCD_BIN, ETCDCTL_BIN, PYTHON, ONLY, KEEP
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ETCD_BIN=${ETCD_BIN:-etcd}
ETCDCTL_BIN=${ETCDCTL_BIN:-etcdctl}
PYTHON=${PYTHON:-python3}
ONLY=${ONLY:-}
RUSTED_BIN=${RUSTED_BIN:-}
die() { echo "flags: $*" >&2; exit 2; }
for c in curl "$ETCDCTL_BIN" "$PYTHON"; do
    command -v "$c" >/dev/null 2>&1 || die "$c not found (.ci/run installs curl and etcdctl)"
done
[ "$ONLY" = rusted ] || command -v "$ETCD_BIN" >/dev/null 2>&1 || die "etcd not found"
[ "$ONLY" = etcd ] || [ -x "$RUSTED_BIN" ] || die "RUSTED_BIN is not an executable file"

WORK=$(mktemp -d /tmp/rusted-flags.XXXXXX)
export COMPAT_TMP=$WORK
SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    local i=0
    while [ $i -lt 50 ] && kill -0 "$SERVER_PID" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}
on_exit() {
    local rc=$?
    stop_server
    [ -n "${KEEP:-}" ] && echo "flags: kept $WORK" >&2 || rm -rf "$WORK"
    exit $rc
}
trap on_exit EXIT

# start BIN ADDR TAG ARGS...: one member on ADDR (client 2379, peer 2380) with ARGS, waits
# until healthy.
start() {
    local bin=$1 addr=$2 tag=$3; shift 3
    rm -rf "$WORK/data-$tag"
    "$bin" --name default --data-dir "$WORK/data-$tag" \
        --listen-client-urls "http://$addr:2379" --advertise-client-urls "http://$addr:2379" \
        --listen-peer-urls "http://$addr:2380" --initial-advertise-peer-urls "http://$addr:2380" \
        --initial-cluster "default=http://$addr:2380" "$@" >"$WORK/server-$tag.log" 2>&1 &
    SERVER_PID=$!
    wait_healthy "$addr" "$tag"
}
wait_healthy() {
    local addr=$1 tag=$2 t0=$SECONDS
    while :; do
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "flags: $tag exited at start:" >&2; tail -20 "$WORK/server-$tag.log" >&2; exit 1; }
        ETCDCTL_API=3 "$ETCDCTL_BIN" --endpoints "$addr:2379" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1 && return 0
        [ $((SECONDS - t0)) -lt 20 ] || { echo "flags: $tag not healthy in 20 s:" >&2; tail -20 "$WORK/server-$tag.log" >&2; exit 1; }
        sleep 0.2
    done
}
step() {
    local name=$1; shift
    echo "### $name"
    "$@" 2>&1 | head -n 20
    echo "exit=${PIPESTATUS[0]}"
}
ctl() { ETCDCTL_API=3 timeout 20 "$ETCDCTL_BIN" --dial-timeout=2s --command-timeout=3s "$@"; }
# The status line and the CORS headers of an HTTP answer, then its body.
http() {
    curl -s -i --max-time 5 "$@" | tr -d '\r' | awk '
        /^HTTP\// && !head { print $1 " " $2; head = 1; next }
        body { print; next }
        /^$/ { body = 1; next }
        tolower($0) ~ /^access-control-/ { print tolower($0) }'
}
# exits BIN ARGS...: the exit code of a server that must refuse to start (killed after 10 s).
exits() {
    local bin=$1; shift
    timeout 10 "$bin" "$@" >/dev/null 2>&1
    echo "exit code $?"
}

scenarios() {
    local bin=$1 a=$2 tag=$3
    echo "## Go-style single-dash flags"
    rm -rf "$WORK/data-$tag-dash"
    "$bin" -name dash -data-dir "$WORK/data-$tag-dash" \
        -listen-client-urls "http://$a:2379" -advertise-client-urls "http://$a:2379" \
        -listen-peer-urls "http://$a:2380" -initial-advertise-peer-urls "http://$a:2380" \
        -initial-cluster "dash=http://$a:2380" >"$WORK/server-$tag-dash.log" 2>&1 &
    SERVER_PID=$!
    wait_healthy "$a" "$tag-dash"
    step "put" ctl --endpoints "$a:2379" put k v
    step "member name" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' --endpoints $a:2379 member list | cut -d, -f3"
    stop_server

    echo "## --cors and --host-whitelist"
    start "$bin" "$a" "$tag-cors" --cors "http://good.example:8080" --host-whitelist "good.example,$a"
    step "allowed origin" http -H "Origin: http://good.example:8080" "http://$a:2379/version"
    step "other origin" http -H "Origin: http://bad.example:8080" "http://$a:2379/v3/kv/range" -d '{"key":"aw=="}'
    step "preflight" http -X OPTIONS -H "Origin: http://good.example:8080" "http://$a:2379/v3/kv/put"
    step "whitelisted host" http -H "Host: good.example:2379" "http://$a:2379/health"
    step "host not whitelisted" http -H "Host: evil.example:2379" "http://$a:2379/health"
    step "gRPC is not host-checked" ctl --endpoints "$a:2379" get k
    stop_server

    echo "## default --cors and --host-whitelist"
    start "$bin" "$a" "$tag-defaults"
    step "any origin" http -H "Origin: http://any.example:1" "http://$a:2379/v3/kv/range" -d '{"key":"aw=="}'
    step "any host" http -H "Host: any.example:2379" "http://$a:2379/health"
    stop_server

    echo "## --enable-grpc-gateway=false"
    start "$bin" "$a" "$tag-nogw" --enable-grpc-gateway=false
    step "gateway" http "http://$a:2379/v3/kv/range" -d '{"key":"aw=="}'
    step "gRPC" ctl --endpoints "$a:2379" put k v
    step "health" http "http://$a:2379/health"
    stop_server

    echo "## --strict-reconfig-check on one member"
    start "$bin" "$a" "$tag-strict" --strict-reconfig-check=true --max-wals=2 --max-snapshots=1
    step "member add (a second voter)" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' --endpoints $a:2379 member add m2 --peer-urls=http://$a:2390 | grep -c ETCD_INITIAL_CLUSTER"
    step "member add (a third, the second never started)" ctl --endpoints "$a:2379" member add m3 --peer-urls="http://$a:2400"
    stop_server

    echo "## command lines that are refused"
    step "unknown flag" exits "$bin" --no-such-flag
    step "negative count" exits "$bin" --max-wals=-1
    step "not a duration" exits "$bin" --experimental-watch-progress-notify-interval=soon
    step "positional argument" exits "$bin" extra
    step "listen URLs without advertise URLs" exits "$bin" --data-dir "$WORK/x" --listen-client-urls "http://$a:2379"
    step "a variable shadowed by its flag" env ETCD_NAME=x bash -c "$(declare -f exits); exits '$bin' --name y --data-dir '$WORK/y'"
    step "election timeout too long" exits "$bin" --data-dir "$WORK/z" --election-timeout 60000
}

run() {
    local name=$1 bin=$2 a=$3
    scenarios "$bin" "$a" "$name" >"$WORK/$name.raw" 2>&1
    # etcdctl's client library logs its retries: not compared (as in tls.sh).
    grep -v '"msg":"retrying of unary invoker failed"' "$WORK/$name.raw" |
        "$PYTHON" "$HERE/normalize.py" >"$WORK/$name.out"
    echo "flags: $name: $(grep -c '^### ' "$WORK/$name.raw") steps"
}
TARGETS=${TARGETS:-etcd rusted}
[ -z "$ONLY" ] || TARGETS=$ONLY
for t in $TARGETS; do
    case $t in
    etcd) run etcd "$ETCD_BIN" 127.0.0.23 ;;
    rusted) run rusted "$RUSTED_BIN" 127.0.0.24 ;;
    *) die "unknown target $t" ;;
    esac
done
if [ -n "$ONLY" ]; then cat "$WORK/$ONLY.out"; exit 0; fi
if diff -u --label etcd --label rusted "$WORK/etcd.out" "$WORK/rusted.out"; then
    echo "flags: etcd and rusted identical"
else
    echo "flags: etcd and rusted DIFFERENT"
    exit 1
fi
