#!/usr/bin/env bash
# rusted vs Debian's etcd 3.4.23, same settings, same machine, alternating A/B runs (issue 8).
#
#   bash benches/compare.sh            # everything: ~15-25 min on the 2-core VM (about 1.5 GB in /tmp at peak)
#   QUICK=1 RUNS=1 bash benches/compare.sh
#
# Installs the reference if missing (../shared/reference/install.sh: /usr/bin/etcd, /usr/bin/etcdctl
# and etcd's load tool `benchmark`), builds rusted in release unless RUSTED_BIN / RUSTED_BENCH_BIN
# are given, then for each member count, workload, run and load tool starts a fresh etcd cluster and
# a fresh rusted cluster in turn (fresh data dirs, same flags, 127.0.0.1, client ports 42379+,
# peer ports 42480+), runs the tool against it, and stops it. A server is started afresh for every
# single benchmark invocation: (server, members, workload, tool, run), so no run sees data or
# warmed-up caches left by another. With three members only the leader is loaded, except by
# put100-all (every member's endpoint: followers forward).
# Both tools print etcd's report (Summary / Latency distribution); one parser reads Requests/sec,
# p50 and p99. `--precise` is passed so sub-millisecond latencies keep their digits.
#
# Output (stdout, and $OUT if set): a header (date, commit, nproc, kernel), one line per run, then a
# markdown table: req/s = mean over runs, ratio = rusted ÷ etcd, p99 = mean over runs, and per
# request (means over runs; every member summed): server CPU (utime + stime from /proc/PID/stat),
# context switches (voluntary + involuntary of every live thread, /proc/PID/task/*/status) and
# heap allocations (etcd: go_memstats_mallocs_total; rusted, built with --features alloc-count:
# rusted_allocations_total; both from /metrics before and after the load); rows for RSS
# after loading LOAD_KEYS keys and restart time with them (ratio rusted ÷ etcd, lower is better);
# then the put 1-client p50 of both. Beside them: the load tool's own CPU per request (user +
# system of the tool process) for each server, and rusted's CPU ceiling: nproc × 1 s ÷ (server +
# tool CPU per request), the req/s at which the tool and the servers would fill every core.
# Failed or timed-out runs print a message and count as n/a.
#
# Options (environment):
#   RUNS=2                      A/B runs per (members, workload, tool): etcd, rusted, etcd, rusted ...
#   QUICK=0                     1 divides the default totals and LOAD_KEYS by 10 (explicit ones are kept)
#   TOOLS="benchmark rusted-bench"   load tools; "benchmark" alone skips rusted-bench
#   MEMBERS="1 3"               cluster sizes; 3 members run put1 and put100 only
#   WORKLOADS=all               any of: put1 put100 put100-all range-s range-l txn-put watch-latency
#                               lease-keepalive resources ("resources" = RSS + restart; needs 1 in MEMBERS);
#                               put100-all is put100 over every member's endpoint (3 members only)
#   OUT=                        also write the report to this file
#   TIMEOUT=300                 seconds allowed per benchmark run (and per 1M-key load)
#   PUT1_TOTAL=5000 PUT_TOTAL=100000 RANGE_TOTAL=100000 TXN_TOTAL=50000
#   WATCH_TOTAL=2000 (puts at 100/s) LEASE_TOTAL=100000 LOAD_KEYS=1000000
#   RUSTED_BIN, RUSTED_BENCH_BIN  prebuilt binaries (skip cargo); BENCH = etcd's benchmark tool
#   TLS=0                       1: clients over mutual TLS (https client URLs, --client-cert-auth;
#                               the tools and etcdctl get --cacert/--cert/--key; peers stay plain)
#   AUTH=0                      1: auth enabled; the load runs as user "bench" holding readwrite on
#                               the whole key space (not root: every request is checked), with
#                               --user (etcd's benchmark tool only: use TOOLS=benchmark)
#
# Workload notes: watch-latency uses etcd 3.4's flags (--total, --put-rate; it has no --streams or
# --watchers-per-stream): each client opens one watch on the key, so --clients=100 over 10 conns gives
# 100 watchers (100 latencies per put; its req/s is therefore 100 × the put rate, only p50/p99 matter).
# Resource figures use etcd's benchmark tool as loader, one member, RUNS times alternated: VmRSS from
# /proc/PID/status after the load, then SIGTERM, wait for exit, start on the same data dir and time
# until `etcdctl get foo` first succeeds (TCP port polled every 20 ms first, then etcdctl every 20 ms).
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
export ETCDCTL_API=3

RUNS=${RUNS:-2}
QUICK=${QUICK:-0}
TOOLS=${TOOLS:-benchmark rusted-bench}
MEMBERS=${MEMBERS:-1 3}
WORKLOADS=${WORKLOADS:-all}
OUT=${OUT:-}
TIMEOUT=${TIMEOUT:-300}
TLS=${TLS:-0}
AUTH=${AUTH:-0}
q() { if [ "$QUICK" = 1 ]; then echo $(($1 / 10)); else echo "$1"; fi; } # default total, QUICK-scaled
PUT1_TOTAL=${PUT1_TOTAL:-$(q 5000)}
PUT_TOTAL=${PUT_TOTAL:-$(q 100000)}
RANGE_TOTAL=${RANGE_TOTAL:-$(q 100000)}
TXN_TOTAL=${TXN_TOTAL:-$(q 50000)}
WATCH_TOTAL=${WATCH_TOTAL:-$(q 2000)}
LEASE_TOTAL=${LEASE_TOTAL:-$(q 100000)}
LOAD_KEYS=${LOAD_KEYS:-$(q 1000000)}

# ---- the workloads: name -> global flags + subcommand (endpoints are added per run) ----
ALL_WORKLOADS=(put1 put100 put100-all range-s range-l txn-put watch-latency lease-keepalive)
declare -A WL=(
  [put1]="--conns=1 --clients=1 put --key-size=8 --val-size=256 --total=$PUT1_TOTAL"
  [put100]="--conns=10 --clients=100 put --key-size=8 --sequential-keys --val-size=256 --total=$PUT_TOTAL"
  [put100-all]="--conns=10 --clients=100 put --key-size=8 --sequential-keys --val-size=256 --total=$PUT_TOTAL"
  [range-s]="--conns=10 --clients=100 range foo --consistency=s --total=$RANGE_TOTAL"
  [range-l]="--conns=10 --clients=100 range foo --consistency=l --total=$RANGE_TOTAL"
  [txn-put]="--conns=10 --clients=100 txn-put --key-size=8 --val-size=256 --total=$TXN_TOTAL"
  [watch-latency]="--conns=10 --clients=100 watch-latency --total=$WATCH_TOTAL --put-rate=100 --key-size=8 --val-size=256"
  [lease-keepalive]="--conns=10 --clients=100 lease-keepalive --total=$LEASE_TOTAL"
)
declare -A WL_SETUP=([range-s]=put_foo [range-l]=put_foo) # run against the fresh server before the load
declare -A WL_3MEMBERS=([put1]=1 [put100]=1 [put100-all]=1) # workloads also run on three members
declare -A WL_1MEMBER=([put1]=1 [put100]=1 [range-s]=1 [range-l]=1 [txn-put]=1 [watch-latency]=1 [lease-keepalive]=1)
declare -A WL_ALL_EP=([put100-all]=1)                       # loads every member (followers forward), not the leader
LOAD_ARGS="--conns=10 --clients=100 put --sequential-keys --key-space-size=$LOAD_KEYS --total=$LOAD_KEYS --key-size=8 --val-size=256"

[ "$WORKLOADS" = all ] && WORKLOADS="${ALL_WORKLOADS[*]} resources"
for w in $WORKLOADS; do
  [ -n "${WL[$w]:-}" ] || [ "$w" = resources ] || { echo "unknown workload '$w' (known: ${ALL_WORKLOADS[*]} resources)" >&2; exit 2; }
done
has() { [[ " $1 " == *" $2 "* ]]; } # has "list" word

log() { echo "[$(date +%T)] $*" >&2; }
say() { echo "$*"; if [ -n "$OUT" ]; then echo "$*" >>"$OUT"; fi; }

# ---- reference and rusted binaries ----
BENCH=${BENCH:-$HOME/.cache/etcd-reference/bin/benchmark}
if [ ! -x "$BENCH" ] || ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  log "installing the reference etcd"
  bash "$repo/../shared/reference/install.sh" >&2 || { echo "reference install failed" >&2; exit 1; }
fi
if [ -z "${RUSTED_BIN:-}" ] || { has "$TOOLS" rusted-bench && [ -z "${RUSTED_BENCH_BIN:-}" ]; }; then
  log "building rusted (release)"
  # alloc-count: rusted counts its heap allocations (rusted_allocations_total), as etcd's Go
  # runtime does (go_memstats_mallocs_total), for the allocations-per-request column.
  (cd "$repo" && cargo build --release -q -p rusted-server --features alloc-count -p rusted-benches) || { echo "cargo build failed" >&2; exit 1; }
fi
RUSTED_BIN=${RUSTED_BIN:-$repo/target/release/rusted}
RUSTED_BENCH_BIN=${RUSTED_BENCH_BIN:-$repo/target/release/rusted-bench}
[ -x "$RUSTED_BIN" ] || { echo "no rusted binary at $RUSTED_BIN" >&2; exit 1; }
if has "$TOOLS" rusted-bench && [ ! -x "$RUSTED_BENCH_BIN" ]; then
  echo "no rusted-bench at $RUSTED_BENCH_BIN: its rows will be n/a (TOOLS=benchmark to leave them out)" >&2
fi
declare -A TOOL_BIN=([benchmark]=$BENCH [rusted-bench]=$RUSTED_BENCH_BIN)
declare -A SERVER_BIN=([etcd]=$(command -v etcd) [rusted]=$RUSTED_BIN)
SERVERS=(etcd rusted)

# ---- work dir, cleanup ----
WORK=$(mktemp -d /tmp/rusted-compare.XXXXXX)
PIDS=()   # running server processes
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ -n "$OUT" ] && : >"$OUT"

# ---- TLS (TLS=1): a CA, a server certificate for 127.0.0.1, a client certificate ----
SERVER_TLS=()
CLIENT_TLS=()
CURL_TLS=()
SCHEME=http
if [ "$TLS" = 1 ]; then
  bash "$repo/server/tests/compat/certs.sh" "$WORK/certs" 127.0.0.1 || { echo "cannot make certificates (openssl?)" >&2; exit 1; }
  SERVER_TLS=(--cert-file "$WORK/certs/server.pem" --key-file "$WORK/certs/server-key.pem"
    --client-cert-auth --trusted-ca-file "$WORK/certs/ca.pem")
  CLIENT_TLS=(--cacert "$WORK/certs/ca.pem" --cert "$WORK/certs/client.pem" --key "$WORK/certs/client-key.pem")
  CURL_TLS=(--cacert "$WORK/certs/ca.pem" --cert "$WORK/certs/client.pem" --key "$WORK/certs/client-key.pem")
  SCHEME=https
fi

# ---- servers ----
client_ep() { echo "127.0.0.1:$((42379 + $1))"; }
peer_url() { echo "http://127.0.0.1:$((42480 + $1))"; }

launch_member() { # server i members dir token: start member i, append its pid to PIDS
  local server=$1 i=$2 n=$3 dir=$4 token=$5 cluster="" j
  for ((j = 0; j < n; j++)); do cluster+="m$j=$(peer_url "$j"),"; done
  "${SERVER_BIN[$server]}" --name "m$i" --data-dir "$dir/m$i" \
    --listen-client-urls "$SCHEME://$(client_ep "$i")" --advertise-client-urls "$SCHEME://$(client_ep "$i")" \
    "${SERVER_TLS[@]}" \
    --listen-peer-urls "$(peer_url "$i")" --initial-advertise-peer-urls "$(peer_url "$i")" \
    --initial-cluster "${cluster%,}" --initial-cluster-token "$token" --initial-cluster-state new \
    >>"$dir/m$i.log" 2>&1 &
  PIDS+=($!)
}

CTL_AUTH=()
TOOL_AUTH=()
ctl() { etcdctl --dial-timeout=2s --command-timeout=5s "${CLIENT_TLS[@]}" "${CTL_AUTH[@]}" "$@"; }

enable_auth() { # endpoint: root, a "bench" user with readwrite on every key, auth on
  local ep=$1 c
  for c in "user add root:rootpw" "role add root" "user grant-role root root" \
    "user add bench:benchpw" "role add bench" "role grant-permission bench readwrite \"\" --from-key" \
    "user grant-role bench bench" "auth enable"; do
    eval "ctl --endpoints=$ep $c" >/dev/null || { log "auth setup failed: $c"; return 1; }
  done
  CTL_AUTH=(--user root:rootpw)
  TOOL_AUTH=(--user bench:benchpw)
}

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

wait_ready() { # endpoint timeout_s: until a linearizable get succeeds
  local ep=$1 deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    if port_open "$ep" && ctl --endpoints="$ep" get foo >/dev/null 2>&1; then return 0; fi
    sleep 0.02
  done
  return 1
}

leader() { # members: the client endpoint of the leader
  local n=$1 i ep deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    for ((i = 0; i < n; i++)); do
      ep=$(client_ep "$i")
      if ctl --endpoints="$ep" endpoint status -w fields 2>/dev/null |
        awk '/"MemberID"/ {m=$3} /"Leader"/ {l=$3} END {exit !(m != "" && m == l)}'; then
        echo "$ep"; return 0
      fi
    done
    sleep 0.2
  done
  return 1
}

start_cluster() { # server members dir: start a fresh cluster, set EP to the leader's endpoint
  # (not called in $(...): PIDS must stay in this shell)
  local server=$1 n=$2 dir=$3 i
  EP=
  mkdir -p "$dir"
  PIDS=()
  for ((i = 0; i < n; i++)); do launch_member "$server" "$i" "$n" "$dir" "bench-${dir##*/}"; done
  for ((i = 0; i < n; i++)); do
    wait_ready "$(client_ep "$i")" 60 || { log "$server member m$i did not start; log tail:"; tail -5 "$dir/m$i.log" >&2; return 1; }
  done
  EP=$(leader "$n") || { log "$server: no leader"; return 1; }
  if [ "$AUTH" = 1 ]; then enable_auth "$EP" || return 1; fi
}

stop_pid() { # pid: SIGTERM, wait up to 20 s, then SIGKILL
  local p=$1 t
  kill "$p" 2>/dev/null
  for ((t = 0; t < 1000; t++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.02; done
  kill -9 "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}

stop_cluster() {
  local p
  CTL_AUTH=()
  TOOL_AUTH=()
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
}

put_foo() { ctl --endpoints="$1" put foo "$(printf '%0256d' 0)" >/dev/null; }

# ---- one load run ----
parse() { # report file -> "rps p50_ms p99_ms errors total_s" or nothing
  awk '/Requests\/sec:/ {r=$2}
       /Total:/ && t == "" {t=$2}
       $1 == "50%" && $2 == "in" {p50=$3}
       $1 == "99%" && $2 == "in" {p99=$3}
       /^Error distribution:/ {e=1; next}
       e && /^ *\[[0-9]+\]/ {gsub(/[][]/, "", $1); errs+=$1}
       END {if (r != "" && p99 != "") printf "%.1f %.4f %.4f %d %s\n", r, p50*1000, p99*1000, errs, (t == "" ? 0 : t)}' "$1"
}

load() { # tool endpoint args logfile: run the tool under the timeout, print the parsed figures
  local tool=$1 ep=$2 args=$3 logf=$4 rc
  # shellcheck disable=SC2086  # args is a word list from the workload table
  timeout "$TIMEOUT" "${TOOL_BIN[$tool]}" --endpoints="$ep" --precise "${CLIENT_TLS[@]}" "${TOOL_AUTH[@]}" $args >"$logf" 2>"$logf.err"
  rc=$?
  # The tool's own CPU (user + system, seconds): this subshell's children are only it and timeout.
  # (`times` into a file: in a pipe it would run in a fresh subshell, with no children.)
  times >"$logf.times"
  local tcpu; tcpu=$(awk 'NR == 2 {for (i = 1; i <= 2; i++) {split($i, a, /[ms]/); t += a[1] * 60 + a[2]}; print t}' "$logf.times")
  if ((rc == 124)); then log "FAILED: $tool timed out after ${TIMEOUT}s"; return 1; fi
  if ((rc != 0)); then log "FAILED: $tool exited with $rc; stderr tail:"; tail -3 "$logf.err" >&2; return 1; fi
  local res; res=$(parse "$logf")
  [ -n "$res" ] || { log "FAILED: no summary in $tool output"; return 1; }
  echo "$res $tcpu"
}

declare -A RPS P50 P99 CPU CSW ALLOC TCPU # key "workload|members|tool|server" -> space-separated values (n/a for failures)
record() { # key rps p50 p99 [cpu_us_per_request ctx_switches_per_request allocations_per_request tool_cpu_us_per_request]
  RPS[$1]+="$2 "; P50[$1]+="$3 "; P99[$1]+="$4 "; CPU[$1]+="${5:-n/a} "; CSW[$1]+="${6:-n/a} "; ALLOC[$1]+="${7:-n/a} "
  TCPU[$1]+="${8:-n/a} "
}

cpu_ticks() { # the running servers' user + system CPU, in clock ticks
  local p t=0 f
  for p in "${PIDS[@]}"; do
    f=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) && t=$((t + f))
  done
  echo "$t"
}

ctx_switches() { # the running servers' context switches (voluntary + involuntary, every live thread)
  local p t=0 f
  for p in "${PIDS[@]}"; do
    f=$(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ {t += $2} END {print t + 0}') && t=$((t + f))
  done
  echo "$t"
}

allocations() { # server: heap allocations so far, every member, from /metrics (n/a if not exposed)
  local metric i t=0 v
  [ "$1" = etcd ] && metric=go_memstats_mallocs_total || metric=rusted_allocations_total
  for ((i = 0; i < ${#PIDS[@]}; i++)); do
    v=$(curl -s --max-time 5 "${CURL_TLS[@]}" "$SCHEME://$(client_ep "$i")/metrics" |
      awk -v m="$metric" '$1 == m {printf "%.0f", $2; f = 1} END {exit !f}') || { echo n/a; return; }
    t=$((t + v))
  done
  echo "$t"
}

per_request() { # delta requests -> delta / requests (1 decimal), n/a when either is
  awk -v d="$1" -v n="$2" 'BEGIN {if (d == "n/a" || n <= 0) print "n/a"; else printf "%.1f\n", d / n}'
}

fmt_ms() { awk -v v="$1" 'BEGIN {if (v == "n/a") print v; else if (v < 1) printf "%.3f\n", v; else if (v < 100) printf "%.2f\n", v; else printf "%.0f\n", v}'; }

bench_one() { # members workload tool run server
  local n=$1 w=$2 tool=$3 run=$4 server=$5 dir res=""
  local key="$w|$n|$tool|$server"
  dir="$WORK/$server-$n-$w-$tool-$run"
  if [ ! -x "${TOOL_BIN[$tool]}" ]; then record "$key" n/a n/a n/a; return; fi
  log "run $run: $server ($n member(s)), $tool $w"
  if start_cluster "$server" "$n" "$dir"; then
    if [ -z "${WL_SETUP[$w]:-}" ] || "${WL_SETUP[$w]}" "$EP"; then
      local c0 c1 x0 x1 a0 a1
      c0=$(cpu_ticks); x0=$(ctx_switches); a0=$(allocations "$server")
      local eps=$EP i
      if [ -n "${WL_ALL_EP[$w]:-}" ]; then
        eps=; for ((i = 0; i < n; i++)); do eps+="$(client_ep "$i"),"; done; eps=${eps%,}
      fi
      res=$(load "$tool" "$eps" "${WL[$w]}" "$dir/report")
      c1=$(cpu_ticks); x1=$(ctx_switches); a1=$(allocations "$server")
    else
      log "FAILED: setup ${WL_SETUP[$w]} for $w"
    fi
  fi
  stop_cluster
  rm -rf "$dir"
  if [ -n "$res" ]; then
    local rps p50 p99 errs total cpu reqs csw alloc tcpu
    read -r rps p50 p99 errs total tcpu <<<"$res"
    reqs=$(awk -v r="$rps" -v t="$total" 'BEGIN {printf "%.0f", r * t}')
    # Server CPU (every member) per request, in microseconds.
    cpu=$(awk -v d="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v n="$reqs" \
      'BEGIN {if (n > 0) printf "%.1f\n", d / hz * 1e6 / n; else print "n/a"}')
    csw=$(per_request "$((x1 - x0))" "$reqs")
    if [ "$a0" = n/a ] || [ "$a1" = n/a ]; then alloc=n/a; else alloc=$(per_request "$((a1 - a0))" "$reqs"); fi
    tcpu=$(awk -v s="$tcpu" -v n="$reqs" 'BEGIN {if (n > 0 && s != "") printf "%.1f\n", s * 1e6 / n; else print "n/a"}')
    record "$key" "$rps" "$p50" "$p99" "$cpu" "$csw" "$alloc" "$tcpu"
    say "run $run | $n member(s) | $tool | $w | $server | $(printf '%.0f' "$rps") req/s | p50 $(fmt_ms "$p50") ms | p99 $(fmt_ms "$p99") ms | CPU $cpu µs/req | $csw ctx sw/req | $alloc allocs/req | tool CPU $tcpu µs/req$( ((errs > 0)) && echo " | $errs ERRORS")"
  else
    record "$key" n/a n/a n/a
    say "run $run | $n member(s) | $tool | $w | $server | FAILED (n/a)"
  fi
}

# ---- resources: RSS after LOAD_KEYS keys, restart time ----
declare -A RSS RESTART
resources_one() { # run server
  local run=$1 server=$2 dir pid res="" rss="" t0 t1 stop0="" stop1="" restart=""
  dir="$WORK/$server-res-$run"
  log "run $run: $server, load $LOAD_KEYS keys, RSS, restart"
  if start_cluster "$server" 1 "$dir"; then
    pid=${PIDS[0]}
    if res=$(load benchmark "$EP" "$LOAD_ARGS" "$dir/report"); then
      rss=$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
      stop0=$(date +%s.%N); stop_pid "$pid"; stop1=$(date +%s.%N)
      PIDS=()
      t0=$(date +%s.%N)
      launch_member "$server" 0 1 "$dir" "bench-${dir##*/}"
      if wait_ready "$EP" "$TIMEOUT"; then
        t1=$(date +%s.%N)
        restart=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
      else
        log "FAILED: $server did not come back within ${TIMEOUT}s"
      fi
    fi
  fi
  stop_cluster
  local du; du=$(du -sm "$dir" 2>/dev/null | cut -f1)
  rm -rf "$dir"
  RSS[$server]+="${rss:-n/a} "; RESTART[$server]+="${restart:-n/a} "
  say "run $run | 1 member | benchmark | load $LOAD_KEYS keys | $server | $(printf '%.0f' "${res%% *}" 2>/dev/null || echo n/a) req/s | RSS ${rss:-n/a} MB | data ${du:-?} MB | stop $(awk -v a="${stop0:-0}" -v b="${stop1:-0}" 'BEGIN {printf "%.2f", b - a}') s | restart ${restart:-n/a} s"
}

# ---- summary helpers ----
mean() { # "v1 v2 ..." -> mean of numeric values, "(k/n runs)" when some failed, n/a when none
  awk -v s="$1" 'BEGIN {n = split(s, a, " "); k = 0; t = 0
    for (i = 1; i <= n; i++) if (a[i] != "n/a") {k++; t += a[i]}
    if (k == 0) print "n/a"; else printf "%.4f%s\n", t / k, (k < n ? " (" k "/" n " runs)" : "")}'
}
ratio() { # etcd rusted (means, maybe with a note) -> "1.23×"
  awk -v a="${1%% *}" -v b="${2%% *}" 'BEGIN {if (a == "n/a" || b == "n/a" || a + 0 == 0) print "n/a"; else printf "%.2f×\n", b / a}'
}
ceiling() { # server CPU µs/req, tool CPU µs/req (means) -> req/s if every core did only this
  awk -v a="${1%% *}" -v b="${2%% *}" -v c="$(nproc)" \
    'BEGIN {if (a == "n/a" || b == "n/a" || a + b <= 0) print "n/a"; else printf "%.0f\n", c * 1e6 / (a + b)}'
}
num() { # mean with note -> formatted number, format $2 (rps|ms|plain)
  local v=${1%% *} note=""
  [[ "$1" == *" "* ]] && note=" ${1#* }"
  case "$2" in
    rps) [ "$v" = n/a ] && echo n/a || printf '%.0f%s\n' "$v" "$note" ;;
    ms) echo "$(fmt_ms "$v")$note" ;;
    *) [ "$v" = n/a ] && echo n/a || printf '%.2f%s\n' "$v" "$note" ;;
  esac
}

# ---- main ----
say "# rusted vs etcd — $(date -u '+%Y-%m-%d %H:%M UTC')"
say ""
say "commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo n/a), nproc $(nproc), kernel $(uname -r), $(stat -f -c %T "$WORK") at /tmp"
say "etcd: ${SERVER_BIN[etcd]} ($(etcd --version 2>/dev/null | head -1)); rusted: $RUSTED_BIN; tools: $TOOLS"
say "RUNS=$RUNS QUICK=$QUICK MEMBERS=\"$MEMBERS\" WORKLOADS=\"$WORKLOADS\" TIMEOUT=$TIMEOUT TLS=$TLS AUTH=$AUTH"
say "totals: put1 $PUT1_TOTAL, put100 $PUT_TOTAL, range $RANGE_TOTAL, txn-put $TXN_TOTAL, watch $WATCH_TOTAL puts, lease $LEASE_TOTAL, load $LOAD_KEYS keys"
say ""

for n in $MEMBERS; do
  for w in "${ALL_WORKLOADS[@]}"; do
    has "$WORKLOADS" "$w" || continue
    if [ "$n" = 1 ]; then [ -n "${WL_1MEMBER[$w]:-}" ] || continue; else [ -n "${WL_3MEMBERS[$w]:-}" ] || continue; fi
    for ((run = 1; run <= RUNS; run++)); do
      for tool in $TOOLS; do
        for server in "${SERVERS[@]}"; do bench_one "$n" "$w" "$tool" "$run" "$server"; done
      done
    done
  done
done
if has "$WORKLOADS" resources && has "$MEMBERS" 1; then
  for ((run = 1; run <= RUNS; run++)); do
    for server in "${SERVERS[@]}"; do resources_one "$run" "$server"; done
  done
fi

say ""
say "| workload | members | tool | etcd req/s | rusted req/s | ratio | etcd p99 ms | rusted p99 ms | etcd CPU µs/req | rusted CPU µs/req | etcd ctx sw/req | rusted ctx sw/req | etcd allocs/req | rusted allocs/req | tool CPU µs/req (etcd, rusted) | rusted CPU ceiling req/s |"
say "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $MEMBERS; do
  for w in "${ALL_WORKLOADS[@]}"; do
    has "$WORKLOADS" "$w" || continue
    if [ "$n" = 1 ]; then [ -n "${WL_1MEMBER[$w]:-}" ] || continue; else [ -n "${WL_3MEMBERS[$w]:-}" ] || continue; fi
    for tool in $TOOLS; do
      e=$(mean "${RPS[$w|$n|$tool|etcd]:-}"); r=$(mean "${RPS[$w|$n|$tool|rusted]:-}")
      say "| $w | $n | $tool | $(num "$e" rps) | $(num "$r" rps) | $(ratio "$e" "$r") | $(num "$(mean "${P99[$w|$n|$tool|etcd]:-}")" ms) | $(num "$(mean "${P99[$w|$n|$tool|rusted]:-}")" ms) | $(num "$(mean "${CPU[$w|$n|$tool|etcd]:-}")" plain) | $(num "$(mean "${CPU[$w|$n|$tool|rusted]:-}")" plain) | $(num "$(mean "${CSW[$w|$n|$tool|etcd]:-}")" plain) | $(num "$(mean "${CSW[$w|$n|$tool|rusted]:-}")" plain) | $(num "$(mean "${ALLOC[$w|$n|$tool|etcd]:-}")" plain) | $(num "$(mean "${ALLOC[$w|$n|$tool|rusted]:-}")" plain) | $(num "$(mean "${TCPU[$w|$n|$tool|etcd]:-}")" plain), $(num "$(mean "${TCPU[$w|$n|$tool|rusted]:-}")" plain) | $(ceiling "$(mean "${CPU[$w|$n|$tool|rusted]:-}")" "$(mean "${TCPU[$w|$n|$tool|rusted]:-}")") |"
    done
  done
done
if has "$WORKLOADS" resources && has "$MEMBERS" 1; then
  e=$(mean "${RSS[etcd]:-}"); r=$(mean "${RSS[rusted]:-}")
  say "| RSS after $LOAD_KEYS keys (MB) | 1 | benchmark | $(num "$e" plain) | $(num "$r" plain) | $(ratio "$e" "$r") | | | | |"
  e=$(mean "${RESTART[etcd]:-}"); r=$(mean "${RESTART[rusted]:-}")
  say "| restart with $LOAD_KEYS keys (s) | 1 | benchmark | $(num "$e" plain) | $(num "$r" plain) | $(ratio "$e" "$r") | | | | |"
  say ""
  say "RSS and restart rows: the etcd/rusted columns hold MB and seconds; ratio rusted ÷ etcd, lower is better."
fi
if has "$WORKLOADS" put1; then
  say ""
  for n in $MEMBERS; do
    for tool in $TOOLS; do
      say "put 1 client p50 ($n member(s), $tool): etcd $(num "$(mean "${P50[put1|$n|$tool|etcd]:-}")" ms) ms, rusted $(num "$(mean "${P50[put1|$n|$tool|rusted]:-}")" ms) ms"
    done
  done
fi
