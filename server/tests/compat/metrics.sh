#!/usr/bin/env bash
# The metrics etcd exports against rusted's, in one scenario run on three members of each:
# writes, txns, ranges, a watch, leases, a member killed and restarted, compaction, defrag and
# a snapshot. Each member's /metrics is scraped; then every metric name either server exports
# (Go's runtime aside) must be in README.md's metrics table, and a metric both export must agree
# in type, help text, label names and histogram buckets. A metric etcd exports that rusted does
# not must be marked so in the table, with why. A Prometheus server (Debian's `prometheus`)
# scrapes each cluster through the scenario; every query of etcd's mixin (mixin_queries.txt)
# that answers with data on etcd must answer with data on rusted.
#
# Env: see harness.sh; README (default: the repository's). Members on ADDR, ADDR+1, ADDR+2.
NAME=metrics
ADDRS="127.0.0.91 127.0.0.94"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
README=${README:-$HERE/../../../README.md}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-prometheus}
command -v "$PROMETHEUS_BIN" >/dev/null 2>&1 || die "prometheus not found (.ci/run installs Debian's)"

# scenario BIN IP1 TAG: leaves $WORK/TAG-m{1,2,3}.prom
scenario() {
    local bin=$1 ip1=$2 tag=$3
    local ip2 ip3 i
    ip2=$(next_ip "$ip1" 1) ip3=$(next_ip "$ip1" 2)
    local cluster="m1=http://$ip1:2380,m2=http://$ip2:2380,m3=http://$ip3:2380"
    local all="$ip1:2379,$ip2:2379,$ip3:2379"
    mkdir -p "$WORK/$tag"
    for i in 1 2 3; do
        member "$bin" "$tag" "m$i" "$(next_ip "$ip1" $((i - 1)))" new "$cluster" --metrics extensive
    done
    wait_endpoints "$all" || return 1
    prometheus_start "$ip1" "$tag" "$ip1:2379" "$ip2:2379" "$ip3:2379" || return 1
    ctl --endpoints "$ip1:2379" watch w --prefix >/dev/null 2>&1 &
    local watcher=$!
    for i in $(seq 1 30); do ctl --endpoints "$all" put "w$i" "v$i" >/dev/null; done
    ctl --endpoints "$all" txn <<<$'value("w1") = "v1"\n\nput w1 x\n\nput w1 y\n' >/dev/null
    ctl --endpoints "$all" get w --prefix >/dev/null
    ctl --endpoints "$all" del w2 >/dev/null
    local lease
    lease=$(ctl --endpoints "$ip1:2379" lease grant 2 | awk '{print $2}')
    ctl --endpoints "$ip1:2379" put leased x --lease "$lease" >/dev/null
    ctl --endpoints "$ip1:2379" lease keep-alive --once "$lease" >/dev/null
    kill -KILL "${MEMBER_PID[m3]}"
    wait "${MEMBER_PID[m3]}" 2>/dev/null
    # m3 may have led: the first puts may wait out an election (and time out).
    for i in $(seq 31 40); do ctl --endpoints "$ip1:2379" put "w$i" "v$i" >/dev/null 2>&1; done
    member "$bin" "$tag" m3 "$ip3" new "$cluster" --metrics extensive
    wait_endpoints "$ip3:2379" || return 1
    local rev
    rev=$(ctl --endpoints "$ip1:2379" endpoint status -w json | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
    ctl --endpoints "$ip1:2379" compact "$rev" >/dev/null
    ctl --endpoints "$all" defrag >/dev/null
    ctl --endpoints "$ip1:2379" snapshot save "$WORK/$tag.db" >/dev/null 2>&1
    sleep 5 # the lease expires; peers' round trips are probed; Prometheus scrapes
    for i in 1 2 3; do
        curl -s "http://$(next_ip "$ip1" $((i - 1))):2379/metrics" >"$WORK/$tag-m$i.prom"
    done
    prometheus_queries "$ip1" "$tag"
    kill "$watcher" 2>/dev/null
    stop_all
}

# prometheus_start IP TAG TARGETS...: a Prometheus server on IP:9090 scraping TARGETS every
# second as job "etcd" (what the mixin's selectors match).
prometheus_start() {
    local ip=$1 tag=$2; shift 2
    local targets t0=$SECONDS
    targets=$(printf '"%s",' "$@")
    printf 'global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n- job_name: etcd\n  static_configs: [{targets: [%s]}]\n' \
        "${targets%,}" >"$WORK/prometheus-$tag.yml"
    "$PROMETHEUS_BIN" --config.file "$WORK/prometheus-$tag.yml" --storage.tsdb.path "$WORK/prometheus-$tag" \
        --web.listen-address "$ip:9090" >"$WORK/prometheus-$tag.log" 2>&1 &
    PIDS+=($!)
    until curl -sf "http://$ip:9090/-/ready" >/dev/null; do
        [ $((SECONDS - t0)) -lt 30 ] || { echo "prometheus not ready in 30 s"; return 1; }
        sleep 0.2
    done
}

# prometheus_queries IP TAG: each mixin query's answer, as JSON lines in $WORK/TAG.queries.
# Evaluated two minutes ahead, so that the alerts' one-minute subqueries have two steps with
# data within the 5-minute lookback after a short run (the last scrape stands for the state).
prometheus_queries() {
    local ip=$1 tag=$2 name query at
    at=$(($(date +%s) + 120))
    grep -v '^#' "$HERE/mixin_queries.txt" | while IFS=$'\t' read -r name query; do
        curl -s "http://$ip:9090/api/v1/query" --data-urlencode "query=$query" --data-urlencode "time=$at" |
            "$PYTHON" -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"name": sys.argv[1], "status": r["status"], "n": len(r.get("data",{}).get("result",[])), "error": r.get("error","")}))' "$name"
    done >"$WORK/$tag.queries"
}

scenario "$ETCD_BIN" "${ADDRS% *}" etcd || die "etcd's scenario failed"
scenario "$RUSTED_BIN" "${ADDRS#* }" rusted || die "rusted's scenario failed"
"$PYTHON" - "$WORK" "$README" <<'EOF'
import re, sys, glob
work, readme = sys.argv[1], sys.argv[2]

def parse(tag):
    """name -> {type, help, labels, buckets} over the three members' pages."""
    out = {}
    for path in sorted(glob.glob(f"{work}/{tag}-m*.prom")):
        for line in open(path):
            line = line.rstrip("\n")
            if line.startswith("# HELP "):
                name, _, text = line[7:].partition(" ")
                out.setdefault(name, {"labels": set(), "buckets": set()})["help"] = text
            elif line.startswith("# TYPE "):
                name, _, kind = line[7:].partition(" ")
                out.setdefault(name, {"labels": set(), "buckets": set()})["type"] = kind
            elif line and not line.startswith("#"):
                m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
                if not m:
                    continue
                series, labels = m.group(1), m.group(3) or ""
                base = series
                for suf in ("_bucket", "_sum", "_count"):
                    if series.endswith(suf) and series[: -len(suf)] in out:
                        base = series[: -len(suf)]
                if base not in out:
                    continue
                for k, v in re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', labels):
                    if k == "le":
                        out[base]["buckets"].add(v)
                    elif not (k == "quantile" and out[base].get("type") == "summary"):
                        out[base]["labels"].add(k)
    return {n: v for n, v in out.items() if not n.startswith("go_")}

etcd, rusted = parse("etcd"), parse("rusted")
if not etcd or not rusted:
    sys.exit("metrics: a scrape is empty")

table = {}
section = open(readme).read().split("### etcd's metrics in rusted", 1)[-1].split("\n#", 1)[0]
for line in section.splitlines():
    m = re.match(r"\|\s*`([a-z_:]+)`\s*\|\s*([a-z]+)\s*\|\s*([^|]+?)\s*\|", line)
    if m:
        table[m.group(1)] = (m.group(2), m.group(3))
fail = []
for name in sorted(set(etcd) | set(rusted)):
    row = table.get(name)
    if row is None:
        fail.append(f"{name}: not in README's metrics table")
        continue
    state = row[1]
    if name in etcd and name in rusted:
        e, r = etcd[name], rusted[name]
        for key in ("type", "help", "labels", "buckets"):
            if e.get(key) != r.get(key) and not (key == "labels" and state.startswith("labels:")):
                fail.append(f"{name}: {key} differs: etcd {e.get(key)!r}, rusted {r.get(key)!r}")
        if not state.startswith(("as etcd", "labels:")):
            fail.append(f"{name}: both export it but the table says {state!r}")
    elif name in etcd:
        if not state.startswith(("not exported", "not seen")):
            fail.append(f"{name}: rusted does not export it but the table says {state!r}")
    else:
        if not state.startswith(("rusted", "etcd 3.5", "not seen")):
            fail.append(f"{name}: only rusted exports it but the table says {state!r}")
for name, (kind, state) in table.items():
    if state.startswith(("as etcd", "rusted", "labels:")) and name not in rusted:
        fail.append(f"{name}: the table says {state!r} but rusted did not export it")
import json
def answers(tag):
    return {q["name"]: q for q in map(json.loads, open(f"{work}/{tag}.queries"))}
qe, qr = answers("etcd"), answers("rusted")
for name, e in qe.items():
    r = qr.get(name, {"status": "missing", "n": 0, "error": ""})
    print(f"metrics: mixin {name}: etcd {e['status']} {e['n']} series, rusted {r['status']} {r['n']} series")
    if r["status"] != "success":
        fail.append(f"mixin query {name} failed on rusted: {r['error']}")
    elif e["n"] > 0 and r["n"] == 0:
        fail.append(f"mixin query {name}: no data from rusted (etcd: {e['n']} series)")
print(f"metrics: etcd {len(etcd)} names, rusted {len(rusted)}, both {len(set(etcd) & set(rusted))}, table {len(table)}")
for f in fail:
    print("metrics: " + f)
sys.exit(1 if fail else 0)
EOF
