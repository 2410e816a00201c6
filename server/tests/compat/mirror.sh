#!/usr/bin/env bash
# make-mirror from a running etcd, under a write load, against etcd and rusted: target etcd
# mirrors with etcdctl into a second etcd, target rusted with rustedctl into rusted. Both must
# end with the destination holding what the source holds under the prefix (renamed to the
# destination prefix), print the same count of keys synced after 30 s, and refuse bad
# arguments alike.
#
# Run by rusted-ctl's tests/compare.rs (it has both binaries).
# Env: see harness.sh; RUSTEDCTL_BIN (required). Source on ADDR, destination on ADDR+1.
NAME=mirror
ADDRS="127.0.0.117 127.0.0.119"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
[ -x "${RUSTEDCTL_BIN:-}" ] || die "RUSTEDCTL_BIN is not an executable file"

single() { # BIN TAG IP: a one-member cluster in the background
    local bin=$1 tag=$2 ip=$3
    "$bin" --name "$tag" --data-dir "$WORK/$tag" \
        --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
        --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
        --initial-cluster "$tag=http://$ip:2380" >>"$WORK/$tag.log" 2>&1 &
    PIDS+=($!)
    local t0=$SECONDS
    until ctl --endpoints "$ip:2379" endpoint health >/dev/null 2>&1; do
        [ $((SECONDS - t0)) -lt 30 ] || { echo "not healthy in 30 s: $ip"; return 1; }
        sleep 0.2
    done
}
# KEY=VALUE lines under a prefix, the prefix cut off.
contents() { # ENDPOINT PREFIX
    ctl --endpoints "$1" get "$2" --prefix -w json | "$PYTHON" -c '
import base64, json, sys
p = sys.argv[1].encode()
for kv in json.load(sys.stdin).get("kvs", []):
    k, v = base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", ""))
    print((k[len(p):] + b"=" + v).decode())' "$2"
}

scenarios() {
    local bin=$1 ip=$2 tag=$3 tool
    [ "$tag" = etcd ] && tool=$ETCDCTL_BIN || tool=$RUSTEDCTL_BIN
    local dip i
    dip=$(next_ip "$ip" 1)
    single "$ETCD_BIN" "$tag-src" "$ip" || return 1
    single "$bin" "$tag-dst" "$dip" || return 1
    local S=(--endpoints "$ip:2379")
    for i in $(seq 1 50); do ctl "${S[@]}" put "src/k$i" "v$i" >/dev/null; done
    ctl "${S[@]}" put other x >/dev/null
    local t0=$SECONDS
    ETCDCTL_API=3 "$tool" "${S[@]}" make-mirror --prefix src/ --dest-prefix dst/ "http://$dip:2379" \
        >"$WORK/$tag-mirror.out" 2>&1 &
    local mm=$!
    PIDS+=("$mm")
    # The load, while the mirror copies and follows.
    for i in $(seq 51 120); do ctl "${S[@]}" put "src/k$i" "v$i" >/dev/null; done
    for i in 1 2 3 4 5; do ctl "${S[@]}" put "src/k$i" "again$i" >/dev/null; done
    ctl "${S[@]}" del src/k7 >/dev/null
    ctl "${S[@]}" del src/k10 src/k12 >/dev/null
    ctl "${S[@]}" txn <<<$'\nput src/t1 a\nput src/t2 b\ndel src/k20\n\n' >/dev/null
    ctl "${S[@]}" put other y >/dev/null
    contents "$ip:2379" src/ | sort >"$WORK/$tag-want"
    # Until the destination caught up (or 20 s).
    local t1=$SECONDS
    until contents "$dip:2379" dst/ | sort | cmp -s - "$WORK/$tag-want"; do
        [ $((SECONDS - t1)) -lt 20 ] || break
        sleep 0.2
    done
    step "source keys under the prefix" sh -c "wc -l <'$WORK/$tag-want'"
    step "the destination holds them, renamed" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' --endpoints $dip:2379 get dst/ --prefix -w json | '$PYTHON' -c '
import base64, json, sys
p = b\"dst/\"
for kv in json.load(sys.stdin).get(\"kvs\", []):
    k, v = base64.b64decode(kv[\"key\"]), base64.b64decode(kv.get(\"value\", \"\"))
    print((k[len(p):] + b\"=\" + v).decode())' | sort | diff '$WORK/$tag-want' - && echo equal"
    step "nothing outside the prefix" ctl --endpoints "$dip:2379" get other
    # The count is printed every 30 s.
    while [ $((SECONDS - t0)) -lt 33 ] && ! [ -s "$WORK/$tag-mirror.out" ]; do sleep 0.5; done
    step "make-mirror printed the count of keys synced" cat "$WORK/$tag-mirror.out"
    kill "$mm" 2>/dev/null
    step "both prefix flags" sh -c "ETCDCTL_API=3 '$tool' --endpoints $ip:2379 make-mirror --dest-prefix a --no-dest-prefix http://$dip:2379 2>&1"
    step "no destination" sh -c "ETCDCTL_API=3 '$tool' --endpoints $ip:2379 make-mirror 2>&1"
    stop_all
}

TARGETS=${TARGETS:-etcd rusted}
run_targets
