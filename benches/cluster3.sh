#!/usr/bin/env bash
# Three-member clusters of Debian's etcd 3.4.23 and of rusted on 127.0.0.1, the same settings,
# driven by etcd's own benchmark tool (put, 256-byte values, 100 clients over 10 connections),
# alternating A/B runs. Prints one line per run and the ratio rusted ÷ etcd.
#
#   benches/cluster3.sh [runs=2] [total=100000]
#   ENDPOINTS=leader benches/cluster3.sh ...   # load only the leader (default: all three members)
set -euo pipefail
runs=${1:-2}
total=${2:-100000}
here=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH:-$HOME/.cache/etcd-reference/bin/benchmark}
[ -x "$bench" ] && command -v etcd >/dev/null || bash "$here/../shared/reference/install.sh" >/dev/null
(cd "$here" && cargo build --release -q -p rusted-server)
rusted=$here/target/release/rusted
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start3() { # $1 = etcd|rusted, $2 = run id
  local bin=$1 id=$2 cluster="" i
  for i in 0 1 2; do cluster+="m$i=http://127.0.0.1:$((33800 + i)),"; done
  cluster=${cluster%,}
  pids=()
  for i in 0 1 2; do
    local exe=$rusted; [ "$bin" = etcd ] && exe=etcd
    "$exe" --name "m$i" --data-dir "$work/$bin-$id-$i" \
      --listen-client-urls "http://127.0.0.1:$((33790 + i))" --advertise-client-urls "http://127.0.0.1:$((33790 + i))" \
      --listen-peer-urls "http://127.0.0.1:$((33800 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((33800 + i))" \
      --initial-cluster "$cluster" --initial-cluster-token "bench-$id" --initial-cluster-state new \
      >"$work/$bin-$id-$i.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:33790 put warm up >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "cluster $bin did not start" >&2; exit 1
}

stop3() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }

all=127.0.0.1:33790,127.0.0.1:33791,127.0.0.1:33792
leader() { # the client URL of the current leader
  local ep
  for _ in $(seq 50); do
    for ep in ${all//,/ }; do
      if ETCDCTL_API=3 etcdctl --endpoints "$ep" endpoint status -w json 2>/dev/null |
        python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; sys.exit(0 if s["leader"]==s["header"]["member_id"] else 1)'; then
        echo "$ep"; return 0
      fi
    done
    sleep 0.2
  done
  echo "no leader" >&2; exit 1
}

run() { # prints "req/s p99"
  local eps=$all
  [ "${ENDPOINTS:-all}" = leader ] && eps=$(leader)
  "$bench" --endpoints="$eps" --conns=10 --clients=100 \
    put --key-size=8 --sequential-keys --total="$total" --val-size=256 2>/dev/null |
    awk '/Requests\/sec/ {r=$2} /99% in/ {p=$3} END {printf "%.0f %.1f\n", r, p*1000}'
}

declare -A sum
for r in $(seq "$runs"); do
  for b in etcd rusted; do
    start3 "$b" "$r"
    out=$(run)
    stop3
    echo "run $r $b: $out  (req/s, p99 ms)"
    sum[$b]=$(echo "${sum[$b]:-0} + ${out%% *}" | bc)
  done
done
echo "mean req/s: etcd $(echo "${sum[etcd]} / $runs" | bc), rusted $(echo "${sum[rusted]} / $runs" | bc), ratio $(echo "scale=2; ${sum[rusted]} / ${sum[etcd]}" | bc)"
