#!/usr/bin/env bash
# TLS scenarios against etcd and rusted, outputs normalized and diffed (as run.sh does for the
# plain scripts): one-way TLS, mutual TLS with a good certificate, none and one from another
# CA, auto TLS, the JSON gateway and snapshot save over TLS, http and https listeners at once,
# a metrics URL, and peers over mutual TLS (three members; a member whose certificate the
# others do not trust stays cut off).
#
# Env: RUSTED_BIN (required unless ONLY=etcd), ETCD_BIN, ETCDCTL_BIN, PYTHON, ONLY, KEEP;
#      RUSTEDCTL_BIN: also run rusted's scenarios with rustedctl as the client (its output must
#      equal etcdctl's against etcd too); TARGETS: any of "etcd rusted rustedctl" (default:
#      etcd and rusted, and rustedctl when RUSTEDCTL_BIN is set)
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ETCD_BIN=${ETCD_BIN:-etcd}
ETCDCTL_BIN=${ETCDCTL_BIN:-etcdctl}
PYTHON=${PYTHON:-python3}
ONLY=${ONLY:-}
RUSTED_BIN=${RUSTED_BIN:-}
die() { echo "tls: $*" >&2; exit 2; }
for c in openssl curl "$ETCDCTL_BIN" "$PYTHON"; do
    command -v "$c" >/dev/null 2>&1 || die "$c not found (.ci/run installs openssl, curl and etcdctl)"
done
[ "$ONLY" = rusted ] || command -v "$ETCD_BIN" >/dev/null 2>&1 || die "etcd not found"
[ "$ONLY" = etcd ] || [ -x "$RUSTED_BIN" ] || die "RUSTED_BIN is not an executable file (the server: rustedctl runs against it too)"

WORK=$(mktemp -d /tmp/rusted-tls.XXXXXX)
export COMPAT_TMP=$WORK/etcd:$WORK/rustedctl:$WORK/rusted:$WORK
E_ADDR=127.0.0.21
R_ADDR=127.0.0.22
bash "$HERE/certs.sh" "$WORK/certs" "$E_ADDR" "$R_ADDR" || die "cannot make test certificates"
C=$WORK/certs
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
PIDS=()
stop_cluster() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        local i=0
        while [ $i -lt 50 ] && kill -0 "$p" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    PIDS=()
}
on_exit() {
    local rc=$?
    stop_cluster
    stop_server
    [ -n "${KEEP:-}" ] && echo "tls: kept $WORK" >&2 || rm -rf "$WORK"
    exit $rc
}
trap on_exit EXIT

# start BIN ADDR TAG HEALTH_ARGS... -- SERVER_ARGS...: starts a member whose client URLs the
# server args give, and waits until etcdctl (with HEALTH_ARGS) finds it healthy.
start() {
    local bin=$1 addr=$2 tag=$3; shift 3
    local health=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do health+=("$1"); shift; done
    shift
    local data=$WORK/data-$tag
    rm -rf "$data"
    "$bin" --name default --data-dir "$data" \
        --listen-peer-urls "http://$addr:2380" --initial-advertise-peer-urls "http://$addr:2380" \
        --initial-cluster "default=http://$addr:2380" "$@" >"$WORK/server-$tag.log" 2>&1 &
    SERVER_PID=$!
    local t0=$SECONDS
    while :; do
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "tls: $tag exited at start:" >&2; tail -40 "$WORK/server-$tag.log" >&2; exit 1; }
        ETCDCTL_API=3 "$CLIENT" --dial-timeout=1s --command-timeout=2s "${health[@]}" endpoint health >/dev/null 2>&1 && return 0
        [ $((SECONDS - t0)) -lt 20 ] || { echo "tls: $tag not healthy in 20 s:" >&2; tail -40 "$WORK/server-$tag.log" >&2; exit 1; }
        sleep 0.2
    done
}

# step NAME CMD...: runs a client command, prints its output and exit status
step() {
    local name=$1; shift
    echo "### $name"
    "$@" 2>&1 | head -n 20
    echo "exit=${PIPESTATUS[0]}"
}
ctl() { ETCDCTL_API=3 timeout 20 "$CLIENT" --dial-timeout=2s --command-timeout=3s "$@"; }
# An unreachable or refused TLS server looks the same to every client: keep only that.
refused() { "$@" >/dev/null 2>&1 && echo served || echo refused; }

scenarios() {
    local bin=$1 a=$2 tag=$3
    local tls=(--cert-file "$C/server.pem" --key-file "$C/server-key.pem")
    local https=(--listen-client-urls "https://$a:2379" --advertise-client-urls "https://$a:2379")
    local good=(--endpoints "https://$a:2379" --cacert "$C/ca.pem" --cert "$C/client.pem" --key "$C/client-key.pem")

    echo "## one-way TLS"
    start "$bin" "$a" "$tag-oneway" --endpoints "https://$a:2379" --cacert "$C/ca.pem" -- "${tls[@]}" "${https[@]}"
    step "put" ctl --endpoints "https://$a:2379" --cacert "$C/ca.pem" put k1 v1
    step "get" ctl --endpoints "https://$a:2379" --cacert "$C/ca.pem" get k1
    step "get, host:port endpoint with --cacert" ctl --endpoints "$a:2379" --cacert "$C/ca.pem" get k1
    step "no CA: server not trusted" refused ctl --endpoints "https://$a:2379" get k1
    step "plain gRPC to the TLS port" refused ctl --endpoints "$a:2379" get k1
    step "skip verify" ctl --endpoints "https://$a:2379" --insecure-skip-tls-verify --insecure-transport=false get k1 --print-value-only
    step "gateway put" curl -s --cacert "$C/ca.pem" "https://$a:2379/v3/kv/put" -d '{"key":"Z3c=","value":"MQ=="}'
    step "gateway range" curl -s --cacert "$C/ca.pem" "https://$a:2379/v3/kv/range" -d '{"key":"Z3c="}'
    step "health over TLS" curl -s --cacert "$C/ca.pem" "https://$a:2379/health"
    step "plain HTTP to the TLS port" refused curl -sf --max-time 5 "http://$a:2379/health"
    stop_server

    echo "## mutual TLS"
    start "$bin" "$a" "$tag-mutual" "${good[@]}" -- "${tls[@]}" "${https[@]}" --client-cert-auth --trusted-ca-file "$C/ca.pem"
    step "put with a good certificate" ctl "${good[@]}" put k2 v2
    step "get with a good certificate" ctl "${good[@]}" get k2
    step "no client certificate" refused ctl --endpoints "https://$a:2379" --cacert "$C/ca.pem" get k2
    step "certificate from another CA" refused ctl --endpoints "https://$a:2379" --cacert "$C/ca.pem" --cert "$C/other.pem" --key "$C/other-key.pem" get k2
    step "gateway with a certificate" curl -s --cacert "$C/ca.pem" --cert "$C/client.pem" --key "$C/client-key.pem" "https://$a:2379/v3/kv/range" -d '{"key":"azI="}'
    step "gateway without one" refused curl -sf --max-time 5 --cacert "$C/ca.pem" "https://$a:2379/v3/kv/range" -d '{"key":"azI="}'
    # (stdout only: etcdctl's progress log lines name its own source files)
    mkdir -p "$WORK/$tag"
    step "snapshot save" sh -c 'ETCDCTL_API=3 "$0" --dial-timeout=2s --command-timeout=3s "$@" 2>/dev/null' "$CLIENT" "${good[@]}" snapshot save "$WORK/$tag/snap.db"
    step "snapshot status" ctl -w table snapshot status "$WORK/$tag/snap.db"
    # The client certificate's CN ("client") is the user of requests without a token.
    step "auth: add root" ctl "${good[@]}" user add root:rootpw
    step "auth: role root" ctl "${good[@]}" role add root
    step "auth: grant root" ctl "${good[@]}" user grant-role root root
    step "auth: user client, no password" ctl "${good[@]}" user add client --no-password
    step "auth: role rc" ctl "${good[@]}" role add rc
    step "auth: rc reads k2" ctl "${good[@]}" role grant-permission rc read k2
    step "auth: grant rc" ctl "${good[@]}" user grant-role client rc
    step "auth: enable" ctl "${good[@]}" auth enable
    step "CN user reads k2" ctl "${good[@]}" get k2
    step "CN user writes k2" ctl "${good[@]}" put k2 x
    step "CN user reads k5" ctl "${good[@]}" get k5
    step "a password for the CN user" ctl "${good[@]}" --user client:x get k2
    step "root's token over the certificate" ctl "${good[@]}" --user root:rootpw put k5 v5
    stop_server

    echo "## a trusted CA without --client-cert-auth (etcd requires client certificates then too)"
    start "$bin" "$a" "$tag-caonly" "${good[@]}" -- "${tls[@]}" "${https[@]}" --trusted-ca-file "$C/ca.pem"
    step "with a good certificate" ctl "${good[@]}" put k5 v5
    step "no client certificate" refused ctl --endpoints "https://$a:2379" --cacert "$C/ca.pem" get k5
    stop_server

    echo "## auto TLS"
    start "$bin" "$a" "$tag-auto" --endpoints "https://$a:2379" --insecure-skip-tls-verify --insecure-transport=false -- "${https[@]}" --auto-tls
    step "put" ctl --endpoints "https://$a:2379" --insecure-skip-tls-verify --insecure-transport=false put k3 v3
    step "get" ctl --endpoints "https://$a:2379" --insecure-skip-tls-verify --insecure-transport=false get k3
    step "generated certificate" ls "$WORK/data-$tag-auto/fixtures/client"
    step "not trusted without skip" refused ctl --endpoints "https://$a:2379" --cacert "$C/ca.pem" get k3
    stop_server

    echo "## kubeadm's static-pod command line"
    rm -rf "$WORK/data-$tag-kubeadm"
    "$bin" --advertise-client-urls="https://$a:2379" --cert-file="$C/server.pem" \
        --client-cert-auth=true --data-dir="$WORK/data-$tag-kubeadm" \
        --experimental-initial-corrupt-check=true \
        --experimental-watch-progress-notify-interval=5s \
        --initial-advertise-peer-urls="https://$a:2380" --initial-cluster="cp1=https://$a:2380" \
        --key-file="$C/server-key.pem" --listen-client-urls="https://$a:2379" \
        --listen-metrics-urls="http://$a:2381" --listen-peer-urls="https://$a:2380" --name=cp1 \
        --peer-cert-file="$C/server.pem" --peer-client-cert-auth=true \
        --peer-key-file="$C/server-key.pem" --peer-trusted-ca-file="$C/ca.pem" \
        --snapshot-count=10000 --trusted-ca-file="$C/ca.pem" >"$WORK/server-$tag-kubeadm.log" 2>&1 &
    SERVER_PID=$!
    local t0=$SECONDS
    until ctl "${good[@]}" endpoint health >/dev/null 2>&1; do
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "tls: $tag kubeadm exited at start:" >&2; tail -40 "$WORK/server-$tag-kubeadm.log" >&2; exit 1; }
        [ $((SECONDS - t0)) -lt 20 ] || { echo "tls: $tag kubeadm not healthy in 20 s" >&2; exit 1; }
        sleep 0.2
    done
    step "put with the client certificate" ctl "${good[@]}" put /registry/k v
    step "get" ctl "${good[@]}" get /registry/k
    step "member list" ctl "${good[@]}" member list
    step "metrics URL: /health" curl -s "http://$a:2381/health"
    step "no client certificate" refused ctl --endpoints "https://$a:2379" --cacert "$C/ca.pem" get k
    stop_server

    echo "## http and https listeners, metrics URL"
    start "$bin" "$a" "$tag-both" --endpoints "$a:2378" -- "${tls[@]}" \
        --listen-client-urls "http://$a:2378,https://$a:2379" --advertise-client-urls "http://$a:2378" \
        --listen-metrics-urls "http://$a:2381"
    step "put over http" ctl --endpoints "$a:2378" put k4 v4
    step "get over https" ctl --endpoints "https://$a:2379" --cacert "$C/ca.pem" get k4
    step "metrics URL: /health" curl -s "http://$a:2381/health"
    step "metrics URL: has_leader" sh -c "curl -s http://$a:2381/metrics | grep '^etcd_server_has_leader '"
    step "metrics URL: no gRPC there" refused ctl --endpoints "$a:2381" get k4
    stop_server
}

# cluster BIN ADDR TAG BAD: three members m0..m2 on ADDR (client ports 2379/2389/2399, peer
# ports 2380/2390/2400), peers over mutual TLS; with BAD=1, m2's peer certificate comes from
# a CA the others do not trust. Waits until m0 is healthy. (The cluster token is the same for
# every target, so member IDs, and the order of member lists, are too.)
cluster() {
    local bin=$1 a=$2 tag=$3 bad=$4 i
    local init="m0=https://$a:2380,m1=https://$a:2390,m2=https://$a:2400"
    for i in 0 1 2; do
        local cp=$((2379 + 10 * i)) pp=$((2380 + 10 * i)) cert=$C/server.pem key=$C/server-key.pem
        if [ "$bad" = 1 ] && [ $i = 2 ]; then cert=$C/other.pem; key=$C/other-key.pem; fi
        rm -rf "$WORK/data-$tag-m$i"
        "$bin" --name "m$i" --data-dir "$WORK/data-$tag-m$i" \
            --listen-client-urls "http://$a:$cp" --advertise-client-urls "http://$a:$cp" \
            --listen-peer-urls "https://$a:$pp" --initial-advertise-peer-urls "https://$a:$pp" \
            --initial-cluster "$init" --initial-cluster-token "tls-peers-$bad" \
            --peer-cert-file "$cert" --peer-key-file "$key" --peer-client-cert-auth \
            --peer-trusted-ca-file "$C/ca.pem" >"$WORK/server-$tag-m$i.log" 2>&1 &
        PIDS+=($!)
    done
    local t0=$SECONDS
    until ETCDCTL_API=3 "$CLIENT" --endpoints "$a:2379" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1; do
        [ $((SECONDS - t0)) -lt 30 ] || { echo "tls: $tag cluster not healthy in 30 s:" >&2; tail -20 "$WORK/server-$tag-m0.log" >&2; exit 1; }
        sleep 0.2
    done
}

peer_scenarios() {
    local bin=$1 a=$2 tag=$3
    echo "## peer TLS, three members"
    cluster "$bin" "$a" "$tag-peers" 0
    step "put on m0" ctl --endpoints "$a:2379" put p1 v1
    step "get on m2" ctl --endpoints "$a:2399" get p1
    local t0=$SECONDS # every member published (and so serving) before the list is compared
    while ctl --endpoints "$a:2389" member list 2>&1 | grep -q unstarted || ! ctl --endpoints "$a:2389" member list >/dev/null 2>&1; do
        [ $((SECONDS - t0)) -lt 15 ] || break
        sleep 0.2
    done
    # (sorted by name: member IDs hash the peer URLs, which differ between the targets)
    step "member list" sh -c "ETCDCTL_API=3 '$CLIENT' --endpoints $a:2389 member list | sort -t, -k3"
    # Time-to-live is answered by the leader: at least one of these is a follower forwarding
    # over the peer TLS.
    local id
    id=$(ctl --endpoints "$a:2379" lease grant 600 | awk '{print $2}')
    step "lease time-to-live on m1" sh -c "ETCDCTL_API=3 '$CLIENT' --endpoints $a:2389 lease timetolive $id | sed 's/remaining(.*)/remaining(TTL)/'"
    step "lease time-to-live on m2" sh -c "ETCDCTL_API=3 '$CLIENT' --endpoints $a:2399 lease timetolive $id | sed 's/remaining(.*)/remaining(TTL)/'"
    stop_cluster
    echo "## peer TLS, a member with an untrusted certificate"
    cluster "$bin" "$a" "$tag-untrusted" 1
    step "put on m0" ctl --endpoints "$a:2379" put p2 v2
    step "m1 healthy" refused ctl --endpoints "$a:2389" endpoint health
    step "m2 cut off" refused ctl --endpoints "$a:2399" endpoint health
    step "m2 has not got the write" ctl --endpoints "$a:2399" get p2 --consistency=s
    stop_cluster
}

run() {
    local name=$1 bin=$2 a=$3
    CLIENT=${4:-$ETCDCTL_BIN}
    { scenarios "$bin" "$a" "$name"; peer_scenarios "$bin" "$a" "$name"; } >"$WORK/$name.raw" 2>&1
    # etcdctl's client library logs its retries (rustedctl has no such library): not compared.
    grep -v '"msg":"retrying of unary invoker failed"' "$WORK/$name.raw" |
        "$PYTHON" "$HERE/normalize.py" >"$WORK/$name.out"
    echo "tls: $name: $(grep -c '^### ' "$WORK/$name.raw") steps"
}
TARGETS=${TARGETS:-etcd rusted${RUSTEDCTL_BIN:+ rustedctl}}
[ -z "$ONLY" ] || TARGETS=$ONLY
for t in $TARGETS; do
    case $t in
    etcd) run etcd "$ETCD_BIN" "$E_ADDR" ;;
    rusted) run rusted "$RUSTED_BIN" "$R_ADDR" ;;
    rustedctl) [ -x "${RUSTEDCTL_BIN:-}" ] || die "RUSTEDCTL_BIN is not an executable file"
        run rustedctl "$RUSTED_BIN" "$R_ADDR" "$RUSTEDCTL_BIN" ;;
    *) die "unknown target $t" ;;
    esac
done
if [ -n "$ONLY" ]; then cat "$WORK/$ONLY.out"; exit 0; fi
fail=0
for other in $TARGETS; do
    [ "$other" != etcd ] || continue
    if diff -u --label etcd --label "$other" "$WORK/etcd.out" "$WORK/$other.out"; then
        echo "tls: etcd and $other identical"
    else
        echo "tls: etcd and $other DIFFERENT"
        fail=1
    fi
done
exit $fail
