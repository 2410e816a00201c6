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

run_targets
