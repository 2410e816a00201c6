#!/usr/bin/env python3
"""A soak of a 3-member rusted cluster (issue 25): for DURATION seconds a mixed load runs —
puts, txns, deletes and ranges from several writers, watchers following the writers' prefixes,
leases granted, kept alive and left to expire, compactions, defrags and restarts of m2 or m3
(m1 stays up, so its memory spans the run); each client has a home member, moves to the next
when its member fails and goes home again 20 s later, so every member carries the same load
throughout — and at the end it reports errors by kind, each member's RSS and open fds over time (after the
warm-up), db size against what is in use, and watch events lost: each watcher must have seen
the revision of every write acknowledged under its prefix.

    RUSTED_BIN=target/release/rusted DURATION=3600 python3 benches/soak.py

Env: RUSTED_BIN (required), DURATION=3600 (s), WRITERS=3, IP=127.0.0.141 (members on IP, +1,
+2), OUT (also write the report there), FLAGS (more server flags, e.g. "--snapshot-count 10000"). Needs python's etcd3 (`.ci/run` makes a venv with it).
Not part of the default test suite. Exit status 1 when a watch event was lost, or the memory
median, in the last quarter after warm-up (15 min), of a member not restarted since the warm-up
(m1) exceeds GROWTH_LIMIT (default 1.2×) times its median in the first quarter (a restarted
member is a new process, warming up again inside the quarters). Medians of 10 s samples, not peaks: a defrag's copy
lifts memory for seconds. Client refusals within 15 s of a deliberate restart are counted
apart from errors.
"""
import collections
import statistics
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import etcd3

DURATION = float(os.environ.get("DURATION", "3600"))
WRITERS = int(os.environ.get("WRITERS", "3"))
BIN = os.environ["RUSTED_BIN"]
IP = os.environ.get("IP", "127.0.0.141")
GROWTH_LIMIT = float(os.environ.get("GROWTH_LIMIT", "1.2"))
# Memory settles in 15–20 min at the default load (the raft cache, the WAL index, the
# allocator's arenas fill); a 1 h run measured 35 → 46 → 48 → 48 MB quarter medians.
WARMUP = min(900.0, DURATION / 4)
FLAGS = os.environ.get("FLAGS", "").split()
IPS = [IP.rsplit(".", 1)[0] + "." + str(int(IP.rsplit(".", 1)[1]) + i) for i in range(3)]
CLUSTER = ",".join("m%d=http://%s:2380" % (i + 1, ip) for i, ip in enumerate(IPS))

work = tempfile.mkdtemp(prefix="rusted-soak.")
stop = threading.Event()
lock = threading.Lock()
errors = collections.Counter()
restart_errors = collections.Counter()  # those within RESTART_GRACE of a deliberate restart
RESTART_GRACE = 15.0
ops = collections.Counter()
procs = {}
samples = collections.defaultdict(list)  # member -> [(t, rss_kb, fds, db, in_use)]
acked = collections.defaultdict(set)  # writer prefix -> revisions of acknowledged writes
seen = collections.defaultdict(set)  # writer prefix -> revisions its watcher saw
restarts = []  # (seconds since start, member index)
t_start = time.time()


def start_member(i):
    name = "m%d" % (i + 1)
    ip = IPS[i]
    log = open(os.path.join(work, name + ".log"), "ab")
    procs[i] = subprocess.Popen(
        [BIN, "--name", name, "--data-dir", os.path.join(work, name),
         "--listen-client-urls", "http://%s:2379" % ip, "--advertise-client-urls", "http://%s:2379" % ip,
         "--listen-peer-urls", "http://%s:2380" % ip, "--initial-advertise-peer-urls", "http://%s:2380" % ip,
         "--initial-cluster", CLUSTER, "--initial-cluster-token", "soak", "--quota-backend-bytes", str(8 << 30)] + FLAGS,
        stdout=subprocess.DEVNULL, stderr=log)


def error(kind, e):
    msg = str(e).split("\n")[0][:80] or type(e).__name__
    # A refusal within seconds of a deliberate restart is the restart's, counted apart.
    during = any(0 <= time.time() - t_start - t < RESTART_GRACE for t, _ in restarts)
    with lock:
        (restart_errors if during else errors)["%s: %s: %s" % (kind, type(e).__name__, msg)] += 1


def client(i):
    return etcd3.client(host=IPS[i % 3], port=2379, timeout=10)


# A client whose member fails moves to the next one, and goes back home HOME_AFTER s later:
# load stays spread as at the start, so each member's memory is compared under the same load.
HOME_AFTER = 20.0


class Route:
    def __init__(self, home):
        self.home, self.m, self.away = home, home, 0.0

    def failed(self):
        self.m += 1
        self.away = time.time()

    def away_too_long(self):
        return self.m % 3 != self.home % 3 and time.time() - self.away > HOME_AFTER

    def now(self):
        """The member to use now (home again once it has been away long enough)."""
        if self.away_too_long():
            self.m = self.home
        return self.m


def writer(w):
    prefix = "soak/w%d/" % w
    route = Route(w)
    c, m = client(w), w
    n = 0
    while not stop.is_set():
        if route.now() != m:
            m = route.m
            c = client(m)
        n += 1
        key = prefix + "k%d" % (n % 2000)
        try:
            r = random.random()
            if r < 0.7:
                resp = c.put(key, os.urandom(random.randint(50, 1000)))
                rev = resp.header.revision
            elif r < 0.85:
                # Both branches write. python's etcd3 returns no header for a txn: its revision
                # is not known here, so txns are not among the writes checked for by watchers.
                c.transaction(
                    compare=[c.transactions.version(key) > 0],
                    success=[c.transactions.put(key, b"txn"), c.transactions.put(key + "/t", b"x")],
                    failure=[c.transactions.put(key, b"new")])
                rev = None
                with lock:
                    ops["txn"] += 1
            elif r < 0.95:
                deleted = c.delete(key, return_response=True)
                rev = deleted.header.revision if deleted.deleted else None
            else:
                c.get_prefix(prefix, keys_only=True)
                rev = None
                with lock:
                    ops["range"] += 1
            if rev is not None:
                with lock:
                    acked[prefix].add(rev)
                    ops["write"] += 1
        except Exception as e:  # a member restarting, a leader change: counted, then go on
            error("write", e)
            route.failed()
            m = route.m
            c = client(m)
            time.sleep(0.2)


def watcher(w):
    """Follows writer w's prefix from revision 1, reconnecting from the next revision."""
    prefix = "soak/w%d/" % w
    nxt, route = 1, Route(w)
    while not stop.is_set():
        c = client(route.now())
        try:
            events, cancel = c.watch_prefix(prefix, start_revision=nxt)
            until = t_start + DURATION + 30 - time.time()
            if route.m % 3 != w % 3:
                until = min(until, HOME_AFTER)  # then reconnect, at home, from nxt
            timer = threading.Timer(max(0.0, until), cancel)
            timer.start()
            for ev in events:
                rev = ev.mod_revision
                with lock:
                    seen[prefix].add(rev)
                nxt = max(nxt, rev + 1)
                if stop.is_set() and time.time() > t_start + DURATION + 20:
                    break
            timer.cancel()
        except Exception as e:
            error("watch", e)
            route.failed()
        time.sleep(0.5)


def leases():
    route = Route(0)
    c, m = client(0), 0
    kept = []
    while not stop.is_set():
        if route.now() != m:
            m = route.m
            c = client(m)
        try:
            lease = c.lease(random.randint(3, 8))
            c.put("soak/lease/%d" % lease.id, b"x", lease=lease)
            with lock:
                ops["lease"] += 1
            if random.random() < 0.3:
                kept.append(lease)
            for l in kept[-20:]:
                l.refresh()
            kept = kept[-20:]
        except Exception as e:
            error("lease", e)
            route.failed()
            m = route.m
            c = client(m)
        time.sleep(0.05)


def maintenance():
    route = Route(0)
    last_compact = last_defrag = last_restart = time.time()
    while not stop.wait(1.0):
        now = time.time()
        c = client(route.now())
        try:
            if now - last_compact > 30:
                rev = c.get_response("soak/none").header.revision
                # Keep the last 20,000 revisions: watchers reconnecting after a restart resume
                # within them.
                if rev and rev > 20000:
                    c.compact(rev - 20000)
                    ops["compact"] += 1
                last_compact = now
            if now - last_defrag > 120:
                client(random.randrange(3)).defragment()
                ops["defrag"] += 1
                last_defrag = now
            if now - last_restart > 300 and now < t_start + DURATION - 60:
                # m1 is never restarted: its memory is measured across the whole run.
                i = random.randrange(1, 3)
                restarts.append((now - t_start, i))
                procs[i].send_signal(signal.SIGTERM)
                procs[i].wait(timeout=30)
                time.sleep(2)
                start_member(i)
                ops["restart"] += 1
                last_restart = now
        except Exception as e:
            error("maintenance", e)
            route.failed()


def kb(pid, field):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def monitor():
    while not stop.wait(10.0):
        for i in range(3):
            p = procs[i]
            try:
                try:
                    fds = len(os.listdir("/proc/%d/fd" % p.pid))
                except FileNotFoundError:
                    continue  # restarted between the lookup and the read
                st = client(i).status()
                samples[i].append((time.time() - t_start, kb(p.pid, "VmRSS"), kb(p.pid, "RssAnon"),
                                   fds, st.db_size))
            except Exception as e:
                error("monitor", e)


def main():
    for i in range(3):
        start_member(i)
    deadline = time.time() + 30
    while True:
        try:
            client(0).put("soak/ready", b"1")
            break
        except Exception:
            if time.time() > deadline:
                sys.exit("cluster not ready in 30 s")
            time.sleep(0.5)
    threads = [threading.Thread(target=f, args=a, daemon=True) for f, a in
               [(writer, (w,)) for w in range(WRITERS)] + [(watcher, (w,)) for w in range(WRITERS)]
               + [(leases, ()), (maintenance, ()), (monitor, ())]]
    for t in threads:
        t.start()
    time.sleep(DURATION)
    stop.set()
    # Watchers drain what was written until now.
    time.sleep(15)
    report()


def report():
    lines = []
    out = lines.append
    out("# soak: %d s, %d writers, %s (commit %s)" % (
        DURATION, WRITERS, time.strftime("%Y-%m-%d"),
        subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()))
    out("")
    out("operations: " + ", ".join("%s %d" % kv for kv in sorted(ops.items())))
    out("errors by kind (%d):" % sum(errors.values()))
    for k, v in errors.most_common():
        out("  %6d  %s" % (v, k))
    out("refusals during deliberate restarts (%d):" % sum(restart_errors.values()))
    for k, v in restart_errors.most_common():
        out("  %6d  %s" % (v, k))
    lost_total = 0
    for prefix in sorted(acked):
        lost = acked[prefix] - seen[prefix]
        lost_total += len(lost)
        out("watch %s: %d acknowledged writes, %d seen, %d lost%s" % (
            prefix, len(acked[prefix]), len(acked[prefix] & seen[prefix]), len(lost),
            (" (first: %s)" % sorted(lost)[:5]) if lost else ""))
    out("")
    live = 0
    try:
        for value, meta in client(0).get_prefix("soak/"):
            live += len(meta.key) + len(value)
    except Exception as e:
        error("report", e)
    out("live data at the end (keys and values): %.1f MB" % (live / 1048576))
    out("")
    out("| member | RSS after warm-up | RSS at end | max RSS | anon after warm-up → end | anon median (peak), quarters after warm-up | fds after warm-up → end | db size at end |")
    out("|---|---|---|---|---|---|---|---|")
    grew = False
    for i in range(3):
        s = [x for x in samples[i] if x[0] >= WARMUP] or samples[i]
        if not s:
            continue
        first, last = s[0], s[-1]
        mx = max(x[1] for x in s)
        span = (DURATION - WARMUP) / 4
        quarters = [[x[2] for x in s if WARMUP + q * span <= x[0] < WARMUP + (q + 1) * span]
                    for q in range(4)]
        peaks = [max(q) if q else 0 for q in quarters]
        medians = [statistics.median(q) if q else 0 for q in quarters]
        # Judged: members never restarted after the warm-up (m1 by construction). A member
        # restarted meanwhile is a new process whose own warm-up falls in the quarters.
        judged = not any(t >= WARMUP and j == i for t, j in restarts)
        if judged and medians[0] and medians[3] > medians[0] * GROWTH_LIMIT:
            grew = True
        out("| m%d | %d MB | %d MB | %d MB | %d → %d MB | %s MB | %d → %d | %.1f MB |" % (
            i + 1, first[1] // 1024, last[1] // 1024, mx // 1024, first[2] // 1024, last[2] // 1024,
            " / ".join("%d (%d)" % (m // 1024, p // 1024) for m, p in zip(medians, peaks)),
            first[3], last[3], last[4] / 1048576))
    out("")
    out("anon memory (MB) every 5 min: " + "; ".join(
        "m%d %s" % (i + 1, " ".join(str(x[2] // 1024) for x in samples[i][::30])) for i in range(3)))
    out("restarts: " + ", ".join("m%d at %d s" % (i + 1, t) for t, i in restarts))
    text = "\n".join(lines)
    print(text)
    if os.environ.get("OUT"):
        open(os.environ["OUT"], "w").write(text + "\n")
    for p in procs.values():
        p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    subprocess.run(["rm", "-rf", work])
    sys.exit(1 if lost_total or grew else 0)


if __name__ == "__main__":
    main()
