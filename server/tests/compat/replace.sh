#!/usr/bin/env bash
# The member replacement the documents teach, against etcd and rusted, outputs normalized and
# diffed: three members take writes; m3 dies (SIGKILL); `member remove` it, `member add` it
# again with the same peer URL, wipe its data dir, start it with the printed
# --initial-cluster and --initial-cluster-state existing; it must come back under the new ID,
# `started`, and serve every key written before.
#
# Env: see harness.sh. Members on ADDR, ADDR+1, ADDR+2.
NAME=replace
ADDRS="127.0.0.81 127.0.0.84"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

# The member list without IDs (they differ per server and run), sorted by name.
members() { ctl --endpoints "$1" member list | cut -d, -f2- | sort; }

scenarios() {
    local bin=$1 ip1=$2 tag=$3
    local ip2 ip3
    ip2=$(next_ip "$ip1" 1) ip3=$(next_ip "$ip1" 2)
    local cluster="m1=http://$ip1:2380,m2=http://$ip2:2380,m3=http://$ip3:2380"
    local E=(--endpoints "$ip1:2379,$ip2:2379")
    mkdir -p "$WORK/$tag"
    member "$bin" "$tag" m1 "$ip1" new "$cluster"
    member "$bin" "$tag" m2 "$ip2" new "$cluster"
    member "$bin" "$tag" m3 "$ip3" new "$cluster"
    wait_endpoints "$ip1:2379,$ip2:2379,$ip3:2379" || return 1
    local i
    for i in $(seq 1 20); do ctl "${E[@]}" put "k$i" "v$i" >/dev/null; done
    step "member list" members "$ip1:2379"
    kill -KILL "${MEMBER_PID[m3]}"
    wait "${MEMBER_PID[m3]}" 2>/dev/null
    # The strict reconfiguration check wants a quorum of members connected for 5 s.
    sleep 6
    local old
    old=$(ctl "${E[@]}" member list | grep ', m3, ' | cut -d, -f1)
    step "member remove m3" ctl "${E[@]}" member remove "$old"
    local added
    added=$(ctl "${E[@]}" member add m3 --peer-urls "http://$ip3:2380" 2>&1)
    step "member add m3" echo "$added"
    step "member list after the add" members "$ip1:2379"
    rm -rf "$WORK/$tag/m3"
    local printed
    printed=$(echo "$added" | grep '^ETCD_INITIAL_CLUSTER=' | cut -d'"' -f2)
    member "$bin" "$tag" m3 "$ip3" existing "$printed"
    wait_endpoints "$ip3:2379" || return 1
    # Until the new member has caught up with the others' last write.
    local t0=$SECONDS
    until [ "$(ctl --endpoints "$ip3:2379" get k20 --print-value-only --consistency=s)" = v20 ]; do
        [ $((SECONDS - t0)) -lt 20 ] || break
        sleep 0.2
    done
    step "member list with the new m3" members "$ip1:2379"
    step "the new m3 is the added member" sh -c "[ \"\$(ETCDCTL_API=3 '$ETCDCTL_BIN' --endpoints $ip3:2379 endpoint status | cut -d, -f2)\" != ' $old' ] && echo yes"
    step "keys on m3 (serializable)" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' --endpoints $ip3:2379 get k --prefix --keys-only --consistency=s | grep -c '^k'"
    step "a write through m3" ctl --endpoints "$ip3:2379" put after replace
    step "read back through m1" ctl --endpoints "$ip1:2379" get after --print-value-only
    stop_all
}

# Addresses as IP1..IP3; etcdctl pads IDs to 16 columns (a cluster ID with a leading zero
# nibble gets a space); the printed ETCD_INITIAL_CLUSTER lists members by ID, which differ
# per run: sorted by name.
post_normalize() {
    local ip1=$1
    local ip2 ip3
    ip2=$(next_ip "$ip1" 1) ip3=$(next_ip "$ip1" 2)
    sed -e 's/cluster  */cluster /' -e "s/${ip1//./\\.}\b/IP1/g" -e "s/${ip2//./\\.}\b/IP2/g" \
        -e "s/${ip3//./\\.}\b/IP3/g" | "$PYTHON" -c '
import sys
for line in sys.stdin:
    if line.startswith("ETCD_INITIAL_CLUSTER="):
        v = line.split("\"")[1]
        line = "ETCD_INITIAL_CLUSTER=\"%s\"\n" % ",".join(sorted(v.split(",")))
    sys.stdout.write(line)
'
}

TARGETS=${TARGETS:-etcd rusted}
run_targets
