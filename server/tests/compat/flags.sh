#!/usr/bin/env bash
# Server flags against etcd and rusted, outputs normalized and diffed: Go-style single-dash
# flags, --cors and --host-whitelist on plain HTTP, --enable-grpc-gateway=false,
# --strict-reconfig-check on a fresh member, and the exit codes of command lines etcd refuses
# (unknown flag, bad value, listen URLs without advertise URLs, a variable shadowed by a flag).
#
# Env: see harness.sh.
NAME=flags
ADDRS="127.0.0.23 127.0.0.24"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
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

run_targets
