#!/usr/bin/env bash
# Backup and restore across the two servers, outputs normalized and diffed. Each target's
# server takes writes (overwrites, a deletion, a compaction, a lease with a key, users and
# roles, auth on), saves a snapshot, and the snapshot is restored by the *other* product's
# tool onto three members of the other server: etcd's snapshot → `rustedctl snapshot restore`
# → three rusted members; rusted's snapshot → `etcdctl snapshot restore` → three etcd members.
# The restored clusters must serve what the source served (keys with their revisions,
# leases, users, roles), agree with each other (hashkv), and go on from the source's revision.
# Then the restore tools' refusals: a corrupted snapshot, a truncated one, a copy without its
# hash, a missing file, a data dir that exists.
#
# Run by rusted-ctl's tests/compare.rs (it has both binaries).
# Env: see harness.sh; RUSTEDCTL_BIN (required). Target etcd uses ADDR .. ADDR+3, rusted
# ADDR2 .. ADDR2+3.
NAME=restore
ADDRS="127.0.0.101 127.0.0.105"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
[ -x "${RUSTEDCTL_BIN:-}" ] || die "RUSTEDCTL_BIN is not an executable file"

AUTH=(--user root:rootpw)

# Every key with its revisions, as JSON without the header, one line per key (a step shows
# 20 lines).
dump() {
    ctl "${AUTH[@]}" --endpoints "$1" get "" --prefix -w json |
        "$PYTHON" -c 'import json,sys; [print(json.dumps(kv)) for kv in json.load(sys.stdin).get("kvs")]'
}
# Granted TTL and keys of every lease.
leases() {
    local id
    for id in $(ctl "${AUTH[@]}" --endpoints "$1" lease list | tail -n +2); do
        ctl "${AUTH[@]}" --endpoints "$1" lease timetolive "$id" --keys | sed 's/remaining(-\?[0-9]*s)/remaining(TTL)/'
    done
}
# The sha256 byte lists etcd prints differ with the snapshot's bytes.
restore_cmd() { # TOOL ARGS...
    local tool=$1; shift
    ETCDCTL_API=3 "$tool" snapshot restore "$@" 2>&1 | grep -v '"level":"info"' |
        sed -E 's/\[[0-9 ]+\]/[BYTES]/g'
    return "${PIPESTATUS[0]}"
}

scenarios() {
    local bin=$1 ip=$2 tag=$3
    local other_bin other_tool
    if [ "$tag" = etcd ]; then
        other_bin=$RUSTED_BIN other_tool=$RUSTEDCTL_BIN
    else
        other_bin=$ETCD_BIN other_tool=$ETCDCTL_BIN
    fi
    start "$bin" "$ip" "$tag"
    local E=(--endpoints "$ip:2379") i
    for i in 1 2 3 4 5; do ctl "${E[@]}" put "a$i" "v$i" >/dev/null; done
    ctl "${E[@]}" put a1 again >/dev/null
    ctl "${E[@]}" del a2 >/dev/null
    ctl "${E[@]}" compact 4 >/dev/null
    ctl "${E[@]}" put b1 x >/dev/null
    local lease
    lease=$(ctl "${E[@]}" lease grant 600 | awk '{print $2}')
    ctl "${E[@]}" put leased y --lease "$lease" >/dev/null
    ctl "${E[@]}" user add root:rootpw >/dev/null
    ctl "${E[@]}" role add r >/dev/null
    ctl "${E[@]}" role grant-permission r readwrite a --prefix >/dev/null
    ctl "${E[@]}" user add u:upw >/dev/null
    ctl "${E[@]}" user grant-role u r >/dev/null
    ctl "${E[@]}" auth enable >/dev/null
    step "source keys" dump "$ip:2379"
    step "snapshot save" ctl "${AUTH[@]}" "${E[@]}" snapshot save "$WORK/$tag.db" >/dev/null
    stop_server
    # Three members of the other server from it.
    local ips=() cluster=""
    for i in 1 2 3; do
        ips+=("$(next_ip "$ip" "$i")")
        cluster+="${cluster:+,}m$i=http://${ips[i - 1]}:2380"
    done
    for i in 1 2 3; do
        step "restore m$i" restore_cmd "$other_tool" "$WORK/$tag.db" --name "m$i" \
            --initial-cluster "$cluster" --initial-cluster-token "$NAME" \
            --initial-advertise-peer-urls "http://${ips[i - 1]}:2380" --data-dir "$WORK/$tag/m$i"
    done
    for i in 1 2 3; do member "$other_bin" "$tag" "m$i" "${ips[i - 1]}" new "$cluster"; done
    local all="${ips[0]}:2379,${ips[1]}:2379,${ips[2]}:2379"
    wait_endpoints "$all" "${AUTH[@]}" || return 1
    step "restored keys" dump "${ips[1]}:2379"
    step "member list" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' --user root:rootpw --endpoints ${ips[0]}:2379 member list | cut -d, -f2- | sort"
    step "leases" leases "${ips[0]}:2379"
    step "auth is on: no credentials, no read" ctl --endpoints "${ips[0]}:2379" get a1
    step "user list" ctl "${AUTH[@]}" --endpoints "${ips[0]}:2379" user list
    step "role get r" ctl "${AUTH[@]}" --endpoints "${ips[0]}:2379" role get r
    step "u reads its prefix" ctl --user u:upw --endpoints "${ips[2]}:2379" get a3 --print-value-only
    step "u may not read b1" ctl --user u:upw --endpoints "${ips[2]}:2379" get b1
    step "history below the compaction" ctl "${AUTH[@]}" --endpoints "${ips[0]}:2379" get a1 --rev 3
    step "history above it" ctl "${AUTH[@]}" --endpoints "${ips[0]}:2379" get a1 --rev 5 --print-value-only
    step "a write goes on from the source's revision" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' --user root:rootpw --endpoints $all put c1 z -w json | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)[\"header\"][\"revision\"])'"
    # Until every member applied it, then their hashes of the same revision agree.
    sleep 1
    step "the members agree" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' --user root:rootpw --endpoints $all endpoint hashkv -w json | $PYTHON -c 'import json,sys; h={r[\"HashKV\"][\"hash\"] for r in json.load(sys.stdin)}; print(\"agree\" if len(h) == 1 else h)'"
    stop_all
    # The restore tool's refusals.
    local db=$WORK/$tag.db size
    size=$(stat -c %s "$db")
    cp "$db" "$WORK/$tag-flipped.db"
    printf 'XXXX' | dd of="$WORK/$tag-flipped.db" bs=1 seek=8200 conv=notrunc 2>/dev/null
    head -c $((size - 32)) "$db" >"$WORK/$tag-nohash.db"
    head -c $(((size - 32) / 2 + 32)) "$db" >"$WORK/$tag-half.db"
    step "a corrupted snapshot" restore_cmd "$other_tool" "$WORK/$tag-flipped.db" --data-dir "$WORK/x1"
    step "a truncated snapshot" restore_cmd "$other_tool" "$WORK/$tag-half.db" --data-dir "$WORK/x5"
    step "a snapshot without its hash" restore_cmd "$other_tool" "$WORK/$tag-nohash.db" --data-dir "$WORK/x2"
    step "without its hash, skipping the check" restore_cmd "$other_tool" "$WORK/$tag-nohash.db" --data-dir "$WORK/x3" --skip-hash-check
    step "a missing file" restore_cmd "$other_tool" "$WORK/none.db" --data-dir "$WORK/x4"
    step "a data dir that exists" restore_cmd "$other_tool" "$db" --data-dir "$WORK/x3"
    step "no argument" restore_cmd "$other_tool"
    rm -rf "$WORK"/x*
}

post_normalize() { sed -e "s|$WORK|TMP|g" -e 's/IP[0-9]/IP/g' -E -e 's/127\.0\.0\.[0-9]+/IP/g'; }

TARGETS=${TARGETS:-etcd rusted}
run_targets
