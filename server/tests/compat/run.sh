#!/usr/bin/env bash
# Compatibility suite: run the same client scripts against etcd and rusted and
# diff their normalized outputs.  See README.md.
#
# Env:
#   RUSTED_BIN   path of the rusted binary (required unless ONLY=etcd)
#   ETCD_BIN     etcd binary            (default: etcd from PATH)
#   ETCDCTL_BIN  etcdctl binary         (default: etcdctl from PATH)
#   PYTHON       python with etcd3      (default: python3)
#   ONLY         "etcd" or "rusted": run against one server only, no diff
#   SCRIPTS      subset of "etcdctl gateway client" (default: all three)
#   KEEP         non-empty: keep the temporary directory (outputs, logs)
#   OUT          directory to copy the raw and normalized outputs into
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ETCD_BIN=${ETCD_BIN:-etcd}
ETCDCTL_BIN=${ETCDCTL_BIN:-etcdctl}
PYTHON=${PYTHON:-python3}
ONLY=${ONLY:-}
SCRIPTS=${SCRIPTS:-etcdctl gateway client}
RUSTED_BIN=${RUSTED_BIN:-}

die() {
    echo "compat: $*" >&2
    exit 2
}

case "$ONLY" in
"" | etcd | rusted) ;;
*) die "ONLY must be 'etcd' or 'rusted' (got '$ONLY')" ;;
esac

# ---- prerequisites: fail loudly, never skip --------------------------------
command -v "$ETCD_BIN" >/dev/null 2>&1 || [ "$ONLY" = rusted ] ||
    die "etcd not found (ETCD_BIN=$ETCD_BIN); install Debian's etcd-server 3.4 (apt-get install etcd-server)"
command -v "$ETCDCTL_BIN" >/dev/null 2>&1 ||
    die "etcdctl not found (ETCDCTL_BIN=$ETCDCTL_BIN); install Debian's etcd-client (apt-get install etcd-client)"
command -v "$PYTHON" >/dev/null 2>&1 || die "python not found (PYTHON=$PYTHON)"
"$PYTHON" -c 'import etcd3' 2>/dev/null ||
    die "the python module etcd3 is missing for $PYTHON; install it with: $PYTHON -m pip install etcd3 'protobuf<4'"
command -v curl >/dev/null 2>&1 || die "curl not found"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) not found"
if [ "$ONLY" != etcd ]; then
    [ -n "$RUSTED_BIN" ] || die "RUSTED_BIN is not set (path of the rusted binary), or use ONLY=etcd"
    [ -x "$RUSTED_BIN" ] || die "RUSTED_BIN=$RUSTED_BIN is not an executable file"
fi
if [ "$ONLY" != rusted ]; then
    v=$("$ETCD_BIN" --version 2>/dev/null | sed -n 's/^etcd Version: //p')
    case "$v" in
    3.4.*) ;;
    *) echo "compat: warning: etcd version is '$v', the suite was written against 3.4.23" >&2 ;;
    esac
fi

WORK=$(mktemp -d /tmp/rusted-compat.XXXXXX)
# normalize.py replaces these prefixes (most specific first) by TMP
export COMPAT_TMP=$WORK/etcd:$WORK/rusted:$WORK
SERVER_PID=""
SERVER_LOG=""
SCRIPT_PID=""

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        local i=0
        while [ $i -lt 50 ] && kill -0 "$SERVER_PID" 2>/dev/null; do
            sleep 0.1
            i=$((i + 1))
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "compat: server $SERVER_PID did not stop within 5 s of SIGTERM, sending SIGKILL" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null
        fi
    fi
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}

on_exit() {
    local rc=$?
    if [ -n "$SCRIPT_PID" ] && kill -0 "$SCRIPT_PID" 2>/dev/null; then
        # timeout(1) passes the signal on to the script, whose own trap
        # stops the clients it started in the background
        kill -TERM "$SCRIPT_PID" 2>/dev/null
        wait "$SCRIPT_PID" 2>/dev/null
    fi
    stop_server
    if [ -n "${KEEP:-}" ]; then
        echo "compat: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server NAME BIN ADDR TAG
start_server() {
    local name=$1 bin=$2 addr=$3 tag=$4
    local data=$WORK/data-$tag
    SERVER_LOG=$WORK/server-$tag.log
    rm -rf "$data"
    "$bin" --name default --data-dir "$data" \
        --listen-client-urls "http://$addr:2379" \
        --advertise-client-urls "http://$addr:2379" \
        --listen-peer-urls "http://$addr:2380" \
        --initial-advertise-peer-urls "http://$addr:2380" \
        --initial-cluster "default=http://$addr:2380" \
        >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    local t0=$SECONDS
    while :; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" 2>/dev/null
            echo "compat: $name exited during startup (status $?); its log:" >&2
            tail -n 60 "$SERVER_LOG" >&2
            SERVER_PID=""
            exit 1
        fi
        if ETCDCTL_API=3 "$ETCDCTL_BIN" --endpoints="$addr:2379" --dial-timeout=1s \
            --command-timeout=2s endpoint health >/dev/null 2>&1; then
            return 0
        fi
        if [ $((SECONDS - t0)) -ge 20 ]; then
            echo "compat: $name did not become healthy within 20 s; its log:" >&2
            tail -n 60 "$SERVER_LOG" >&2
            exit 1
        fi
        sleep 0.2
    done
}

# run_script SCRIPT ENDPOINT OUTFILE
run_script() {
    local script=$1 ep=$2 out=$3
    # each script gets at most 120 s; its exit status ends its output, so a
    # crash or a hang shows up in the diff
    # (in the background, so that a signal to run.sh is handled at once)
    case "$script" in
    etcdctl) ETCDCTL_BIN=$ETCDCTL_BIN COMPAT_WORK=$4 timeout 120 bash "$HERE/etcdctl.sh" "$ep" >"$out" 2>&1 & ;;
    gateway) COMPAT_WORK=$4 timeout 120 bash "$HERE/gateway.sh" "$ep" >"$out" 2>&1 & ;;
    client) timeout 120 "$PYTHON" "$HERE/client.py" "$ep" >"$out" 2>&1 & ;;
    *) die "unknown script $script" ;;
    esac
    SCRIPT_PID=$!
    wait "$SCRIPT_PID"
    local rc=$?
    SCRIPT_PID=""
    echo "### script $script exit status $rc" >>"$out"
}

# run_target NAME BIN ADDR
run_target() {
    local name=$1 bin=$2 addr=$3 s t0
    for s in $SCRIPTS; do
        t0=$SECONDS
        mkdir -p "$WORK/$name/scratch-$s"
        start_server "$name" "$bin" "$addr" "$name-$s"
        run_script "$s" "$addr:2379" "$WORK/$name.$s.raw" "$WORK/$name/scratch-$s"
        stop_server
        "$PYTHON" "$HERE/normalize.py" <"$WORK/$name.$s.raw" >"$WORK/$name.$s.out"
        echo "compat: $name/$s: $(grep -c '^### ' "$WORK/$name.$s.raw") steps in $((SECONDS - t0)) s"
    done
}

T0=$SECONDS
[ "$ONLY" = rusted ] || run_target etcd "$ETCD_BIN" 127.0.0.2
[ "$ONLY" = etcd ] || run_target rusted "$RUSTED_BIN" 127.0.0.3

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    cp "$WORK"/*.raw "$WORK"/*.out "$OUT"/
    echo "compat: outputs copied to $OUT"
fi

if [ -n "$ONLY" ]; then
    for s in $SCRIPTS; do
        echo "compat: normalized output of $ONLY/$s: $(wc -l <"$WORK/$ONLY.$s.out") lines"
    done
    [ -n "${OUT:-}" ] || echo "compat: (set OUT=DIR or KEEP=1 to look at them)"
    echo "compat: done in $((SECONDS - T0)) s"
    exit 0
fi

fail=0
summary=()
for s in $SCRIPTS; do
    if diff -u --label "etcd/$s" --label "rusted/$s" "$WORK/etcd.$s.out" "$WORK/rusted.$s.out" >"$WORK/$s.diff"; then
        summary+=("  $s: identical")
    else
        fail=1
        cat "$WORK/$s.diff"
        summary+=("  $s: DIFFERENT ($("$PYTHON" "$HERE/normalize.py" --count-steps "$WORK/etcd.$s.out" "$WORK/rusted.$s.out"))")
    fi
done
echo
echo "compat summary (etcd vs rusted, $((SECONDS - T0)) s):"
printf '%s\n' "${summary[@]}"
if [ $fail -eq 0 ]; then
    echo "compat: all identical"
    exit 0
fi
exit 1
