# Shared by the compatibility scripts flags.sh, auth.sh and replace.sh: sourced after they set
# NAME (their name in messages) and ADDRS ("etcd-address rusted-address"). Gives the checks of
# the tools, a work directory, one server at a time (start, stop, health) or several (PIDS,
# stop_all), the step printer, and run_targets, which runs `scenarios` per target and diffs the
# normalized outputs (post_normalize: a script's own additions).
#
# Env: RUSTED_BIN (required unless ONLY=etcd), ETCD_BIN, ETCDCTL_BIN, PYTHON, NODE (auth.sh:
#      with npm's etcd3 on NODE_PATH), ONLY, KEEP;
#      RUSTEDCTL_BIN: also run rusted's scenarios with rustedctl as the client; TARGETS: any of
#      "etcd rusted rustedctl"
set -u
exec 9>&2 # the script's own stderr, kept for diagnostics while a scenario's output is captured
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ETCD_BIN=${ETCD_BIN:-etcd}
ETCDCTL_BIN=${ETCDCTL_BIN:-etcdctl}
PYTHON=${PYTHON:-python3}
NODE=${NODE:-node}
ONLY=${ONLY:-}
RUSTED_BIN=${RUSTED_BIN:-}
CLIENT=$ETCDCTL_BIN
die() { echo "$NAME: $*" >&2; exit 2; }
for c in curl "$ETCDCTL_BIN" "$PYTHON"; do
    command -v "$c" >/dev/null 2>&1 || die "$c not found (.ci/run installs curl and etcdctl)"
done
[ "$ONLY" = rusted ] || command -v "$ETCD_BIN" >/dev/null 2>&1 || die "etcd not found"
[ "$ONLY" = etcd ] || [ -x "$RUSTED_BIN" ] || die "RUSTED_BIN is not an executable file"

WORK=$(mktemp -d "/tmp/rusted-$NAME.XXXXXX")
export COMPAT_TMP=$WORK
SERVER_PID=""
PIDS=() # servers started by a script itself (several members); stopped on exit too
# stop_pid PID: SIGTERM, up to 5 s, then SIGKILL
stop_pid() {
    kill -TERM "$1" 2>/dev/null
    local i=0
    while [ $i -lt 50 ] && kill -0 "$1" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}
stop_all() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    PIDS=()
}
on_exit() {
    local rc=$?
    stop_server
    stop_all
    [ -n "${KEEP:-}" ] && echo "$NAME: kept $WORK" >&2 || rm -rf "$WORK"
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
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "$NAME: $tag exited at start:" >&2; tail -20 "$WORK/server-$tag.log" >&2; exit 1; }
        ETCDCTL_API=3 "$ETCDCTL_BIN" --endpoints "$addr:2379" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1 && return 0
        [ $((SECONDS - t0)) -lt 20 ] || { echo "$NAME: $tag not healthy in 20 s:" >&2; tail -20 "$WORK/server-$tag.log" >&2; exit 1; }
        sleep 0.2
    done
}
# next_ip IP N: the address N after IP.
next_ip() { echo "${1%.*}.$((${1##*.} + $2))"; }
# member BIN TAG NAME IP STATE CLUSTER [FLAGS...]: one member of a several-member cluster in the
# background (client port 2379, peer 2380 on IP; data in $WORK/TAG/NAME, log $WORK/TAG-NAME.log,
# cluster token the script's NAME); its pid in MEMBER_PID[NAME] and PIDS. Not from inside
# `step` (a subshell): the pid would be lost.
declare -A MEMBER_PID
member() {
    local bin=$1 tag=$2 name=$3 ip=$4 state=$5 cluster=$6
    shift 6
    "$bin" --name "$name" --data-dir "$WORK/$tag/$name" \
        --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
        --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
        --initial-cluster "$cluster" --initial-cluster-state "$state" \
        --initial-cluster-token "$NAME" "$@" >>"$WORK/$tag-$name.log" 2>&1 &
    MEMBER_PID[$name]=$!
    PIDS+=($!)
}
# wait_endpoints ENDPOINTS [FLAGS...]: until every endpoint is healthy (60 s at most: members
# of a loaded CI machine may take long to elect); FLAGS go to the client (credentials). On
# failure the client's last answer and the tails of the members' logs go to the script's
# stderr (fd 9), outside the output compared.
wait_endpoints() {
    local eps=$1 t0=$SECONDS f
    shift
    until ctl "$@" --endpoints "$eps" endpoint health >"$WORK/health.out" 2>&1; do
        if [ $((SECONDS - t0)) -ge 60 ]; then
            echo "not healthy in 60 s: $eps"
            {
                echo "$NAME: not healthy in 60 s: $eps; the client said:"
                tail -5 "$WORK/health.out"
                for f in "$WORK"/*.log; do echo "--- $f"; tail -8 "$f"; done
            } >&9 2>&1
            return 1
        fi
        sleep 0.2
    done
}
# step NAME CMD...: runs a command, prints its output and exit status
step() {
    local name=$1; shift
    echo "### $name"
    "$@" 2>&1 | head -n 20
    echo "exit=${PIPESTATUS[0]}"
}
ctl() { ETCDCTL_API=3 timeout 20 "$CLIENT" --dial-timeout=2s --command-timeout=3s "$@"; }

# post_normalize ADDR: what a script adds to normalize.py (reads stdin); none by default.
post_normalize() { cat; }

# run_targets: `scenarios BIN ADDR TAG` for each target, outputs normalized (etcdctl's retry
# log lines dropped: rustedctl has no such library) and diffed against etcd's.
run_targets() {
    local e_addr=${ADDRS% *} r_addr=${ADDRS#* } t fail=0
    run_one() {
        local name=$1 bin=$2 a=$3
        CLIENT=${4:-$ETCDCTL_BIN}
        scenarios "$bin" "$a" "$name" >"$WORK/$name.raw" 2>&1
        grep -v '"msg":"retrying of unary invoker failed"' "$WORK/$name.raw" |
            "$PYTHON" "$HERE/normalize.py" | post_normalize "$a" >"$WORK/$name.out"
        echo "$NAME: $name: $(grep -c '^### ' "$WORK/$name.raw") steps"
    }
    TARGETS=${TARGETS:-etcd rusted${RUSTEDCTL_BIN:+ rustedctl}}
    [ -z "$ONLY" ] || TARGETS=$ONLY
    for t in $TARGETS; do
        case $t in
        etcd) run_one etcd "$ETCD_BIN" "$e_addr" ;;
        rusted) run_one rusted "$RUSTED_BIN" "$r_addr" ;;
        rustedctl) [ -x "${RUSTEDCTL_BIN:-}" ] || die "RUSTEDCTL_BIN is not an executable file"
            run_one rustedctl "$RUSTED_BIN" "$r_addr" "$RUSTEDCTL_BIN" ;;
        *) die "unknown target $t" ;;
        esac
    done
    if [ -n "$ONLY" ]; then cat "$WORK/$ONLY.out"; return 0; fi
    for t in $TARGETS; do
        [ "$t" != etcd ] || continue
        if diff -u --label etcd --label "$t" "$WORK/etcd.out" "$WORK/$t.out"; then
            echo "$NAME: etcd and $t identical"
        else
            echo "$NAME: etcd and $t DIFFERENT"
            fail=1
        fi
    done
    return $fail
}
