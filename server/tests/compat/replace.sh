#!/usr/bin/env bash
# The member replacement the documents teach, against etcd and rusted, outputs normalized and
# diffed: three members take writes; m3 dies (SIGKILL); `member remove` it, `member add` it
# again with the same peer URL, wipe its data dir, start it with the printed
# --initial-cluster and --initial-cluster-state existing; it must come back under the new ID,
# `started`, and serve every key written before.
#
# Env: RUSTED_BIN (required unless ONLY=etcd), ETCD_BIN, ETCDCTL_BIN, PYTHON, ONLY, KEEP.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ETCD_BIN=${ETCD_BIN:-etcd}
ETCDCTL_BIN=${ETCDCTL_BIN:-etcdctl}
PYTHON=${PYTHON:-python3}
ONLY=${ONLY:-}
RUSTED_BIN=${RUSTED_BIN:-}
die() { echo "replace: $*" >&2; exit 2; }
command -v "$ETCDCTL_BIN" >/dev/null 2>&1 || die "etcdctl not found (.ci/run installs it)"
[ "$ONLY" = rusted ] || command -v "$ETCD_BIN" >/dev/null 2>&1 || die "etcd not found"
[ "$ONLY" = etcd ] || [ -x "$RUSTED_BIN" ] || die "RUSTED_BIN is not an executable file"

WORK=$(mktemp -d /tmp/rusted-replace.XXXXXX)
export COMPAT_TMP=$WORK
declare -A PID
stop_all() {
    local n
    for n in "${!PID[@]}"; do kill -TERM "${PID[$n]}" 2>/dev/null; done
    for n in "${!PID[@]}"; do
        local i=0
        while [ $i -lt 50 ] && kill -0 "${PID[$n]}" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "${PID[$n]}" 2>/dev/null
        wait "${PID[$n]}" 2>/dev/null
    done
    PID=()
}
on_exit() {
    local rc=$?
    stop_all
    [ -n "${KEEP:-}" ] && echo "replace: kept $WORK" >&2 || rm -rf "$WORK"
    exit $rc
}
trap on_exit EXIT

ctl() { ETCDCTL_API=3 timeout 20 "$ETCDCTL_BIN" --dial-timeout=2s --command-timeout=5s "$@"; }
step() {
    local name=$1; shift
    echo "### $name"
    "$@" 2>&1 | grep -v '"msg":"retrying of unary invoker failed"' | head -n 30
    echo "exit=${PIPESTATUS[0]}"
}
# member BIN TAG NAME IP STATE CLUSTER: starts one member in the background
member() {
    local bin=$1 tag=$2 name=$3 ip=$4 state=$5 cluster=$6
    "$bin" --name "$name" --data-dir "$WORK/$tag/$name" \
        --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
        --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
        --initial-cluster "$cluster" --initial-cluster-state "$state" \
        --initial-cluster-token replace >>"$WORK/$tag-$name.log" 2>&1 &
    PID[$name]=$!
}
wait_healthy() { # ENDPOINT
    local t0=$SECONDS
    until ctl --endpoints "$1" endpoint health >/dev/null 2>&1; do
        [ $((SECONDS - t0)) -lt 30 ] || { echo "not healthy in 30 s: $1"; return 1; }
        sleep 0.2
    done
}
# The member list without IDs (they differ per server and run), sorted by name.
members() { ctl --endpoints "$1" member list | cut -d, -f2- | sort; }

scenario() {
    local bin=$1 tag=$2 ip1=$3 ip2=$4 ip3=$5
    local cluster="m1=http://$ip1:2380,m2=http://$ip2:2380,m3=http://$ip3:2380"
    local E=(--endpoints "$ip1:2379,$ip2:2379")
    mkdir -p "$WORK/$tag"
    member "$bin" "$tag" m1 "$ip1" new "$cluster"
    member "$bin" "$tag" m2 "$ip2" new "$cluster"
    member "$bin" "$tag" m3 "$ip3" new "$cluster"
    wait_healthy "$ip1:2379,$ip2:2379,$ip3:2379" || return 1
    local i
    for i in $(seq 1 20); do ctl "${E[@]}" put "k$i" "v$i" >/dev/null; done
    step "member list" members "$ip1:2379"
    kill -KILL "${PID[m3]}"; wait "${PID[m3]}" 2>/dev/null; unset 'PID[m3]'
    # The strict reconfiguration check wants a quorum of members connected for 5 s.
    sleep 6
    local old
    old=$(ctl "${E[@]}" member list | grep ', m3, ' | cut -d, -f1)
    step "member remove m3" ctl "${E[@]}" member remove "$old"
    step "member add m3" ctl "${E[@]}" member add m3 --peer-urls "http://$ip3:2380"
    step "member list after the add" members "$ip1:2379"
    rm -rf "$WORK/$tag/m3"
    local printed
    printed=$(grep '^ETCD_INITIAL_CLUSTER=' "$WORK/$tag.raw" | tail -1 | cut -d'"' -f2)
    member "$bin" "$tag" m3 "$ip3" existing "$printed"
    wait_healthy "$ip3:2379" || return 1
    # Until the new member has caught up with the others' last write.
    local t0=$SECONDS
    until [ "$(ctl --endpoints "$ip3:2379" get k20 --print-value-only --consistency=s)" = v20 ]; do
        [ $((SECONDS - t0)) -lt 20 ] || break
        sleep 0.2
    done
    step "member list with the new m3" members "$ip1:2379"
    step "the new m3 is the added member" sh -c "[ \"\$(ETCDCTL_API=3 '$ETCDCTL_BIN' --endpoints $ip3:2379 endpoint status | cut -d, -f2)\" != ' $old' ] && echo yes"
    step "keys on m3 (serializable)" ctl --endpoints "$ip3:2379" get k --prefix --keys-only --consistency=s
    step "a write through m3" ctl --endpoints "$ip3:2379" put after replace
    step "read back through m1" ctl --endpoints "$ip1:2379" get after --print-value-only
    stop_all
}

# The printed ETCD_INITIAL_CLUSTER lists members by ID, which differ per run: sort by name.
sort_cluster() {
    "$PYTHON" -c '
import sys
for line in sys.stdin:
    if line.startswith("ETCD_INITIAL_CLUSTER="):
        v = line.split("\"")[1]
        line = "ETCD_INITIAL_CLUSTER=\"%s\"\n" % ",".join(sorted(v.split(",")))
    sys.stdout.write(line)
'
}
run() { # TAG BIN IP1 IP2 IP3
    local tag=$1
    scenario "$2" "$tag" "$3" "$4" "$5" >"$WORK/$tag.raw" 2>&1
    # (etcdctl pads IDs to 16 columns: a cluster ID with a leading zero nibble gets a space)
    sed -e 's/cluster  */cluster /' -e "s/${3//./\\.}\b/IP1/g" -e "s/${4//./\\.}\b/IP2/g" -e "s/${5//./\\.}\b/IP3/g" "$WORK/$tag.raw" |
        "$PYTHON" "$HERE/normalize.py" | grep -v '^$' | sort_cluster >"$WORK/$tag.out"
    echo "replace: $tag: $(grep -c '^### ' "$WORK/$tag.raw") steps"
}
TARGETS=${ONLY:-etcd rusted}
for t in $TARGETS; do
    case $t in
    etcd) run etcd "$ETCD_BIN" 127.0.0.81 127.0.0.82 127.0.0.83 ;;
    rusted) run rusted "$RUSTED_BIN" 127.0.0.84 127.0.0.85 127.0.0.86 ;;
    *) die "unknown target $t" ;;
    esac
done
if [ -n "$ONLY" ]; then cat "$WORK/$ONLY.out"; exit 0; fi
if diff -u --label etcd --label rusted "$WORK/etcd.out" "$WORK/rusted.out"; then
    echo "replace: etcd and rusted identical"
else
    echo "replace: etcd and rusted DIFFERENT"
    exit 1
fi
