#!/usr/bin/env bash
# The server's memory while it streams a snapshot of a large store, rusted next to Debian's etcd
# 3.4.23, in one run (issue 23): each server (one member, fresh data dir) is filled with KEYS
# key-values of VAL bytes by etcd's benchmark tool, then `etcdctl snapshot save` runs against it
# while the server's VmRSS and RssAnon are sampled every 50 ms. Reported: the store's size, RSS
# before the snapshot, peak RSS during it, and the snapshot's time and size.
#
#   bash benches/snapshot_memory.sh                 # 1,000,000 × 1 KiB: a ~1.1 GB store
#   KEYS=100000 bash benches/snapshot_memory.sh     # quick
#
# Env: KEYS=1000000 VAL=1024, RUSTED_BIN (default: cargo build --release), BENCH (etcd's
# benchmark tool), OUT (also write the report there). Uses 127.0.0.131 (etcd), .132 (rusted) and
# about 2 × 2.5 × the data in /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
VAL=${VAL:-1024}
BENCH=${BENCH:-$HOME/.cache/etcd-reference/bin/benchmark}
[ -x "$BENCH" ] || bash ../shared/reference/install.sh
if [ -z "${RUSTED_BIN:-}" ]; then
    cargo build --release --bin rusted -q
    RUSTED_BIN=target/release/rusted
fi
WORK=$(mktemp -d /tmp/snapmem.XXXXXX)
PID=""
cleanup() { [ -z "$PID" ] || kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

report=()
# kB of a /proc/PID/status line.
kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

measure() { # NAME BIN IP
    local name=$1 bin=$2 ip=$3
    "$bin" --name m --data-dir "$WORK/$name" --quota-backend-bytes 8589934592 \
        --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
        --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
        --initial-cluster "m=http://$ip:2380" >"$WORK/$name.log" 2>&1 &
    PID=$!
    until ETCDCTL_API=3 etcdctl --endpoints "$ip:2379" endpoint health >/dev/null 2>&1; do sleep 0.2; done
    "$BENCH" --endpoints "$ip:2379" --clients 100 --conns 10 put --total "$KEYS" \
        --key-space-size "$KEYS" --sequential-keys --key-size 16 --val-size "$VAL" >/dev/null 2>&1
    local db before_rss before_anon peak_rss=0 peak_anon=0 t0 t1 size
    db=$(du -sm "$WORK/$name/member/snap/db" | cut -f1)
    before_rss=$(kb "$PID" VmRSS) before_anon=$(kb "$PID" RssAnon)
    t0=$(date +%s.%N)
    ETCDCTL_API=3 etcdctl --endpoints "$ip:2379" snapshot save "$WORK/$name.snap" >/dev/null 2>&1 &
    local snap=$!
    while kill -0 "$snap" 2>/dev/null; do
        local r a
        r=$(kb "$PID" VmRSS) a=$(kb "$PID" RssAnon)
        [ "$r" -gt "$peak_rss" ] && peak_rss=$r
        [ "$a" -gt "$peak_anon" ] && peak_anon=$a
        sleep 0.05
    done
    wait "$snap"
    t1=$(date +%s.%N)
    size=$(du -sm "$WORK/$name.snap" | cut -f1)
    report+=("| $name | $db MB | $((before_rss / 1024)) MB ($((before_anon / 1024)) MB anon) | $((peak_rss / 1024)) MB ($((peak_anon / 1024)) MB anon) | $(printf "%.2f" "$(echo "$t1 - $t0" | bc)") s | $size MB |")
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    rm -rf "${WORK:?}/$name" "$WORK/$name.snap"
}

measure etcd etcd 127.0.0.131
measure rusted "$RUSTED_BIN" 127.0.0.132
{
    echo "Snapshot of $KEYS keys × $VAL B: server memory, $(date -u +%F), commit $(git rev-parse --short HEAD), $(nproc) cores"
    echo
    echo "| server | db file | RSS before | peak RSS during snapshot save | snapshot took | snapshot size |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${report[@]}"
} | tee ${OUT:+"$OUT"}
