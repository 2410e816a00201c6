#!/usr/bin/env bash
# Disaster recovery as the documents teach it, against etcd and rusted, outputs normalized and
# diffed: three members take writes; two die (SIGKILL) and the quorum is lost; the survivor
# restarts with --force-new-cluster and is a one-member cluster holding every acknowledged
# write; two fresh members are added back (`member add`, an empty data dir,
# --initial-cluster-state existing) and catch up.
#
# Env: see harness.sh. Members on ADDR, ADDR+1, ADDR+2.
NAME=recover
ADDRS="127.0.0.111 127.0.0.114"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

members() { ctl --endpoints "$1" member list | cut -d, -f2- | sort; }
# A member's keys once it has caught up with `want` of them (serializable reads: its own).
keys_on() { # ENDPOINT WANT
    local t0=$SECONDS n
    while :; do
        n=$(ctl --endpoints "$1" get k --prefix --keys-only --consistency=s 2>/dev/null | grep -c '^k')
        [ "$n" -ge "$2" ] || [ $((SECONDS - t0)) -ge 20 ] && break
        sleep 0.2
    done
    echo "$n keys"
}
# `member add NAME URL` and start the new member with what it printed.
add_back() { # BIN TAG NAME IP ENDPOINT
    local bin=$1 tag=$2 name=$3 ip=$4 ep=$5 added printed
    added=$(ctl --endpoints "$ep" member add "$name" --peer-urls "http://$ip:2380" 2>&1)
    # etcdctl pads the IDs to 16 columns.
    echo "$added" | head -1 | sed -E 's/Member +([0-9a-f]+) added to cluster +([0-9a-f]+)/Member \1 added to cluster \2/'
    printed=$(echo "$added" | grep '^ETCD_INITIAL_CLUSTER=' | cut -d'"' -f2)
    rm -rf "${WORK:?}/$tag/$name"
    member "$bin" "$tag" "$name" "$ip" existing "$printed"
    wait_endpoints "$ip:2379"
}

scenarios() {
    local bin=$1 ip1=$2 tag=$3
    local ip2 ip3 i
    ip2=$(next_ip "$ip1" 1) ip3=$(next_ip "$ip1" 2)
    local cluster="m1=http://$ip1:2380,m2=http://$ip2:2380,m3=http://$ip3:2380"
    mkdir -p "$WORK/$tag"
    for i in 1 2 3; do member "$bin" "$tag" "m$i" "$(next_ip "$ip1" $((i - 1)))" new "$cluster"; done
    wait_endpoints "$ip1:2379,$ip2:2379,$ip3:2379" || return 1
    local acked=0
    for i in $(seq 1 30); do
        ctl --endpoints "$ip1:2379,$ip2:2379,$ip3:2379" put "k$i" "v$i" >/dev/null && acked=$((acked + 1))
    done
    step "acknowledged writes" echo "$acked"
    kill -KILL "${MEMBER_PID[m2]}" "${MEMBER_PID[m3]}"
    wait "${MEMBER_PID[m2]}" "${MEMBER_PID[m3]}" 2>/dev/null
    step "the survivor still reads (serializable)" keys_on "$ip1:2379" 30
    stop_pid "${MEMBER_PID[m1]}"
    member "$bin" "$tag" m1 "$ip1" new "$cluster" --force-new-cluster
    wait_endpoints "$ip1:2379" || return 1
    step "member list after --force-new-cluster" members "$ip1:2379"
    step "every acknowledged write is there" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' --endpoints $ip1:2379 get k --prefix --keys-only | grep -c '^k'"
    step "a write" ctl --endpoints "$ip1:2379" put k31 v31
    # Not inside `step` (a pipeline's subshell): the members it starts must be in PIDS.
    add_back "$bin" "$tag" m2 "$ip2" "$ip1:2379" >"$WORK/add-m2" 2>&1
    step "member add m2" cat "$WORK/add-m2"
    # etcd 3.5's strict reconfiguration check wants the quorum connected for 5 s.
    sleep 6
    add_back "$bin" "$tag" m3 "$ip3" "$ip1:2379" >"$WORK/add-m3" 2>&1
    step "member add m3" cat "$WORK/add-m3"
    step "member list after the adds" members "$ip1:2379"
    step "keys on m2" keys_on "$ip2:2379" 31
    step "keys on m3" keys_on "$ip3:2379" 31
    step "a write through m3, read through m2" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' --endpoints $ip3:2379 put last x >/dev/null && ETCDCTL_API=3 '$ETCDCTL_BIN' --endpoints $ip2:2379 get last --print-value-only"
    stop_all
}

post_normalize() {
    local ip1=$1 ip2 ip3
    ip2=$(next_ip "$ip1" 1) ip3=$(next_ip "$ip1" 2)
    sed -e 's/cluster  */cluster /' -e "s/${ip1//./\\.}\b/IP1/g" -e "s/${ip2//./\\.}\b/IP2/g" \
        -e "s/${ip3//./\\.}\b/IP3/g"
}

TARGETS=${TARGETS:-etcd rusted}
run_targets
