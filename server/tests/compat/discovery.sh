#!/usr/bin/env bash
# Bootstrap by etcd's v2 discovery, etcd 3.4 members against rusted members: through an
# etcd 3.4 discovery service (--enable-v2) and through a rusted one, three members form the
# cluster and serve it; a fourth with --discovery-fallback=exit is told the cluster is full;
# a fifth with the default fallback runs as etcd 3.4's v2 proxy; a reused token is refused; --discovery beside an explicit --initial-cluster is refused.
#
# Env: see harness.sh.
NAME=discovery
ADDRS="127.0.0.211 127.0.0.221"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

# disc_member BIN TAG NAME IP URL [FLAGS...]: a member bootstrapping through URL.
disc_member() {
    local bin=$1 tag=$2 name=$3 ip=$4 url=$5
    shift 5
    "$bin" --name "$name" --data-dir "$WORK/$tag/$name" \
        --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
        --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
        --discovery "$url" "$@" >>"$WORK/$tag-$name.log" 2>&1 &
    MEMBER_PID[$name]=$!
    PIDS+=($!)
}
# exits BIN TAG NAME IP URL [FLAGS...]: a member that must refuse to start (60 s at most): its
# exit code and the discovery error its log names.
exits() {
    local bin=$1 tag=$2 name=$3 ip=$4 url=$5
    shift 5
    timeout 60 "$bin" --name "$name" --data-dir "$WORK/$tag/$name" \
        --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
        --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
        --discovery "$url" "$@" >>"$WORK/$tag-$name.log" 2>&1
    echo "exit code $?"
    grep -o -E 'discovery: (cluster is full|found duplicate name|size key is bad|bad discovery endpoint)|registered with discovery service|discovery URL should not be set when joining existing initial cluster|multiple discovery or bootstrap flags are set|[0-9]+: Key not found \([^)]*\)' \
        "$WORK/$tag-$name.log" | sort -u
}

# wait_proxy IP: until the proxy on IP knows the cluster's client URLs (30 s at most).
wait_proxy() {
    local t0=$SECONDS
    until curl -s "http://$1:2379/v2/config/local/proxy" | grep -q http; do
        [ $((SECONDS - t0)) -lt 30 ] || { echo "no proxy endpoints in 30 s"; return 1; }
        sleep 0.5
    done
}

scenarios() {
    local bin=$1 a=$2 tag=$3 svc svcbin s m1 m2 m3 m4
    m1=$(next_ip "$a" 1) m2=$(next_ip "$a" 2) m3=$(next_ip "$a" 3) m4=$(next_ip "$a" 4)
    s=$(next_ip "$a" 5)
    for svc in etcd rusted; do
        echo "## members through a $svc discovery service"
        svcbin=$ETCD_BIN
        [ "$svc" = rusted ] && svcbin=$RUSTED_BIN
        start "$svcbin" "$s" "$tag-svc-$svc" --enable-v2
        local url="http://$s:2379/v2/keys/discovery/token-$svc"
        step "size" curl -s -o /dev/null -w '%{http_code}\n' -X PUT "$url/_config/size" -d value=3
        disc_member "$bin" "$tag-$svc" m1 "$m1" "$url" --discovery-fallback exit
        disc_member "$bin" "$tag-$svc" m2 "$m2" "$url" --discovery-fallback exit
        disc_member "$bin" "$tag-$svc" m3 "$m3" "$url" --discovery-fallback exit
        step "cluster up" wait_endpoints "$m1:2379,$m2:2379,$m3:2379"
        step "members" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' --endpoints $m1:2379 member list | cut -d, -f3- | sort"
        step "put" ctl --endpoints "$m1:2379" put k v
        step "get from another member" ctl --endpoints "$m3:2379" get k
        step "registrations" sh -c "curl -s '$url?recursive=true' | grep -o '\"value\":\"m[0-9]=[^\"]*\"' | sort"
        step "a fourth member" exits "$bin" "$tag-$svc" m4 "$m4" "$url" --discovery-fallback exit
        disc_member "$bin" "$tag-$svc" m5 "$m4" "$url"
        step "a fifth member becomes a proxy (the default fallback)" wait_proxy "$m4"
        step "proxy endpoints" sh -c "curl -s http://$m4:2379/v2/config/local/proxy | tr ',[]' '\n\n\n' | grep http | sort"
        step "health through the proxy" curl -s "http://$m4:2379/health"
        step "a put through the proxy" curl -s -o /dev/null -w '%{http_code}\n' -X POST "http://$m4:2379/v3/kv/put" -d '{"key":"cA==","value":"eA=="}'
        step "read from a member" ctl --endpoints "$m2:2379" get p
        stop_pid "${MEMBER_PID[m5]}"
        # m1 again, data lost: its ID is registered already.
        stop_pid "${MEMBER_PID[m1]}"
        rm -rf "$WORK/$tag-$svc/m1"
        step "token reused" exits "$bin" "$tag-$svc" m1 "$m1" "$url" --discovery-fallback exit
        step "a token never set up" exits "$bin" "$tag-$svc" m6 "$m4" "http://$s:2379/v2/keys/discovery/nothing" --discovery-fallback exit
        stop_all
        stop_server
    done
    echo "## --discovery and --initial-cluster together"
    step "refused" exits "$bin" "$tag-flags" m9 "$m1" "http://$s:2379/x" --initial-cluster "m9=http://$m1:2380"
    echo "## --discovery with --initial-cluster-state existing"
    step "refused" exits "$bin" "$tag-flags" m8 "$m1" "http://$s:2379/x" --initial-cluster-state existing
}

post_normalize() {
    local k out=cat
    for k in 5 4 3 2 1 0; do
        out="$out | sed -e 's/$(next_ip "$1" "$k" | sed 's/\./\\./g')\\b/IP$k/g'"
    done
    eval "$out"
}

fail=0
run_targets || fail=1

# etcd 3.4 has no v3 discovery (etcd 3.6's): rusted members alone, through an etcd 3.4 and a
# rusted discovery service (any v3 API serves).
v3_member() { # v3_member TAG NAME IP TOKEN ENDPOINTS [FLAGS...]: replaces its shell (run it in one)
    local tag=$1 name=$2 ip=$3 token=$4 eps=$5
    shift 5
    exec "$RUSTED_BIN" --name "$name" --data-dir "$WORK/$tag/$name" \
        --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
        --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
        --discovery-token "$token" --discovery-endpoints "$eps" "$@" >>"$WORK/$tag-$name.log" 2>&1
}
a=127.0.0.173
for svc in etcd rusted; do
    echo "## v3 discovery through a $svc service"
    svcbin=$ETCD_BIN
    [ "$svc" = rusted ] && svcbin=$RUSTED_BIN
    s=$(next_ip "$a" 5)
    start "$svcbin" "$s" "v3-svc-$svc"
    ETCDCTL_API=3 "$ETCDCTL_BIN" --endpoints "$s:2379" put "/_etcd/registry/v3tok/_config/size" 3 >/dev/null
    for i in 1 2 3; do
        v3_member "v3-$svc" "m$i" "$(next_ip "$a" "$i")" v3tok "http://$s:2379" &
        MEMBER_PID[m$i]=$!
        PIDS+=($!)
    done
    eps="$(next_ip "$a" 1):2379,$(next_ip "$a" 2):2379,$(next_ip "$a" 3):2379"
    if wait_endpoints "$eps" && [ "$(ETCDCTL_API=3 "$ETCDCTL_BIN" --endpoints "$eps" member list | grep -c ', started, m[123], ')" = 3 ]; then
        echo "$NAME: v3 discovery through $svc: 3 members started"
    else
        echo "$NAME: v3 discovery through $svc: the cluster did not form"; tail -3 "$WORK"/v3-$svc-m*.log; fail=1
    fi
    timeout 60 bash -c "$(declare -f v3_member); RUSTED_BIN='$RUSTED_BIN' WORK='$WORK' v3_member v3-$svc m4 $(next_ip "$a" 4) v3tok http://$s:2379"
    code=$?
    if [ $code = 1 ] && grep -q "discovery: cluster is full" "$WORK/v3-$svc-m4.log"; then
        echo "$NAME: v3 discovery through $svc: a fourth member is told the cluster is full"
    else
        echo "$NAME: v3 discovery through $svc: a fourth member exited $code"; tail -3 "$WORK/v3-$svc-m4.log"; fail=1
    fi
    timeout 60 bash -c "$(declare -f v3_member); RUSTED_BIN='$RUSTED_BIN' WORK='$WORK' v3_member v3-$svc m5 $(next_ip "$a" 4) nosuchtoken http://$s:2379"
    if grep -q "discovery: size key not found" "$WORK/v3-$svc-m5.log"; then
        echo "$NAME: v3 discovery through $svc: a token never set up is refused"
    else
        echo "$NAME: v3 discovery through $svc: a token never set up was not refused"; fail=1
    fi
    stop_all
    stop_server
done
exit $fail
