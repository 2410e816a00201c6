#!/usr/bin/env python3
"""A partitioned leader, healed: how soon its members serve writes again (issue 25), etcd and
rusted side by side in one run.

For each system a 3-member cluster runs with its default timing (heartbeat 100 ms, election
1000 ms). Each member runs under its own uid, so iptables can cut one member's peer traffic
(port 2380) both ways while its clients still reach it. A run: find the leader; put in a loop,
each put with a 300 ms deadline, through the leader's endpoint and through a follower's; cut
the leader off for PARTITION seconds; heal; wait until a put through the old leader succeeds.
Reported per run:
  heal→write   time from the heal to the first successful put through the old leader
  majority gap longest time without a successful put through the follower, during the cut
  after heal   longest time without one through the follower in the 10 s after the heal
The target (issue 25): heal→write within one election timeout plus one heartbeat (1.1 s).

    sudo RUSTED_BIN=target/release/rusted python3 benches/partition_heal.py

Env: RUSTED_BIN (required), ETCD_BIN=etcd, ETCDCTL=etcdctl, RUNS=3, PARTITION=5 (s),
IP=127.0.0.161 (etcd on IP..IP+2, rusted on IP+3..IP+5). Needs root (iptables, setpriv) and
python's etcd3 (`.ci/run` makes a venv with it). Not part of the default test suite.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import etcd3

RUSTED = os.environ["RUSTED_BIN"]
ETCD = os.environ.get("ETCD_BIN", "etcd")
ETCDCTL = os.environ.get("ETCDCTL", "etcdctl")
RUNS = int(os.environ.get("RUNS", "3"))
PARTITION = float(os.environ.get("PARTITION", "5"))
BASE = os.environ.get("IP", "127.0.0.161")
UID0 = 41000
DEADLINE = 0.3


def ip(n):
    head, last = BASE.rsplit(".", 1)
    return "%s.%d" % (head, int(last) + n)


def rules(action, uid, member_ip):
    """Drops every peer packet the member sends and every packet sent to its peer port."""
    for r in (["OUTPUT", "-m", "owner", "--uid-owner", str(uid), "-p", "tcp", "--dport", "2380"],
              ["OUTPUT", "-m", "owner", "--uid-owner", str(uid), "-p", "tcp", "--sport", "2380"],
              ["OUTPUT", "-d", member_ip, "-p", "tcp", "--dport", "2380"]):
        subprocess.run(["iptables", "-w", action] + r + ["-j", "DROP"], check=action == "-A")


class Cluster:
    def __init__(self, name, binary, first):
        self.name, self.binary = name, binary
        self.ips = [ip(first + i) for i in range(3)]
        self.uids = [UID0 + first + i for i in range(3)]
        self.work = tempfile.mkdtemp(prefix="partition-%s." % name)
        os.chmod(self.work, 0o777)
        cluster = ",".join("%s%d=http://%s:2380" % (name, i, a) for i, a in enumerate(self.ips))
        self.procs = []
        for i, a in enumerate(self.ips):
            log = open(os.path.join(self.work, "m%d.log" % i), "wb")
            self.procs.append(subprocess.Popen(
                ["setpriv", "--reuid=%d" % self.uids[i], "--regid=%d" % self.uids[i], "--clear-groups",
                 "--", binary, "--name", "%s%d" % (name, i),
                 "--data-dir", os.path.join(self.work, "m%d" % i),
                 "--listen-client-urls", "http://%s:2379" % a, "--advertise-client-urls", "http://%s:2379" % a,
                 "--listen-peer-urls", "http://%s:2380" % a, "--initial-advertise-peer-urls", "http://%s:2380" % a,
                 "--initial-cluster", cluster, "--initial-cluster-token", "partition-" + name],
                stdout=log, stderr=log))
        deadline = time.time() + 30
        while self.leader() is None:
            if time.time() > deadline:
                sys.exit("%s: no leader in 30 s" % name)
            time.sleep(0.3)

    def leader(self):
        """Index of the member that leads, by its own status."""
        r = subprocess.run([ETCDCTL, "--endpoints", ",".join("http://%s:2379" % a for a in self.ips),
                            "--command-timeout=2s", "endpoint", "status", "-w", "json"],
                           capture_output=True, text=True, env=dict(os.environ, ETCDCTL_API="3"))
        try:
            for i, st in enumerate(json.loads(r.stdout)):
                h = st["Status"]
                if h["header"]["member_id"] == h["leader"]:
                    return self.ips.index(st["Endpoint"].split("//")[1].split(":")[0])
        except (ValueError, KeyError, TypeError):
            pass
        return None

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["rm", "-rf", self.work])


class Prober(threading.Thread):
    """Puts through one endpoint in a loop; keeps the end time and outcome of each."""

    def __init__(self, endpoint_ip):
        super().__init__(daemon=True)
        self.client = etcd3.client(host=endpoint_ip, port=2379, timeout=DEADLINE)
        self.key = "probe/" + endpoint_ip
        self.results = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                self.client.put(self.key, b"x")
                ok = True
            except Exception:
                ok = False
            self.results.append((time.time(), ok))
            if not ok:
                time.sleep(0.01)

    def first_success_after(self, t):
        return next((e for e, ok in self.results if ok and e > t), None)

    def longest_gap(self, lo, hi):
        """Longest time between successes (or the window's ends) within [lo, hi]."""
        marks = [lo] + [e for e, ok in self.results if ok and lo < e < hi] + [hi]
        return max(b - a for a, b in zip(marks, marks[1:]))


def one_run(c):
    lead = c.leader()
    if lead is None:
        return None
    other = (lead + 1) % 3
    old, fol = Prober(c.ips[lead]), Prober(c.ips[other])
    old.start()
    fol.start()
    time.sleep(2)
    t0 = time.time()
    rules("-A", c.uids[lead], c.ips[lead])
    time.sleep(PARTITION)
    rules("-D", c.uids[lead], c.ips[lead])
    t1 = time.time()
    deadline = t1 + 30
    while old.first_success_after(t1) is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(10)
    old.halt.set()
    fol.halt.set()
    old.join()
    fol.join()
    back = old.first_success_after(t1)
    return {
        "heal_to_write": (back - t1) if back else float("inf"),
        "majority_gap": fol.longest_gap(t0, t1),
        "after_heal": fol.longest_gap(t1, t1 + 10),
    }


def main():
    systems = [("etcd", ETCD, 0), ("rusted", RUSTED, 3)]
    results = {name: [] for name, _, _ in systems}
    for name, binary, first in systems:
        c = Cluster(name, binary, first)
        try:
            for _ in range(RUNS):
                r = one_run(c)
                if r:
                    results[name].append(r)
                    print("%-6s heal→write %.3f s, majority gap %.3f s, after heal %.3f s" % (
                        name, r["heal_to_write"], r["majority_gap"], r["after_heal"]), flush=True)
                time.sleep(2)
        finally:
            c.stop()
    print()
    print("# partition of the leader for %g s, healed; medians of %d runs (%s)" % (
        PARTITION, RUNS, time.strftime("%Y-%m-%d")))
    print()
    print("| system | heal → first write via the old leader | longest write gap on the majority, during the cut | after the heal |")
    print("|---|---|---|---|")
    med = {}
    for name in results:
        rs = results[name]
        if not rs:
            print("| %s | no run | | |" % name)
            continue
        med[name] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        m = med[name]
        print("| %s | %.3f s | %.3f s | %.3f s |" % (name, m["heal_to_write"], m["majority_gap"], m["after_heal"]))
    if len(med) == 2 and med["rusted"]["heal_to_write"] > 0:
        print()
        print("heal → write, etcd / rusted: %.2f×; target ≤ 1.1 s (election + heartbeat): %s" % (
            med["etcd"]["heal_to_write"] / med["rusted"]["heal_to_write"],
            "met" if med["rusted"]["heal_to_write"] <= 1.1 else "missed"))


if __name__ == "__main__":
    main()
