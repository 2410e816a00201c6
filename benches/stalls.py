#!/usr/bin/env python3
"""Where etcd stalls (issue 26), etcd 3.4 and rusted side by side in one run, one fresh member
each per part:

  defrag    a file of ≥ 2 × DEFRAG_KEYS KiB, half of it garbage after a compaction; while
            `defragment` runs, one client puts and one reads (linearizable) at 400/s each:
            the defrag's length and the slowest put and get that overlapped it.
  ranges    RANGE_KEYS × 1 KiB; RANGE_CLIENTS (16, then 64) clients each read the whole key
            space at once: the server's peak RSS (and how many answers came back whole);
            then RANGE_STALLED (64) callers ask for it and never read, for RANGE_STALL_SECONDS
            (20): the server's peak RSS (what it buffers for slow readers).
            The clients are raw HTTP/2 readers that count and drop the answer's bytes, so
            64 × 120 MB answers need no client memory.
  watchers  WATCHERS watch streams on every key whose clients never read; puts at 5,000/s
            for 30 s: the server's peak RSS, and the puts' p99.
  leases    LEASES leases granted to expire in the same second; puts at 1,000/s across it:
            their p99 and slowest.

    RUSTED_BIN=target/release/rusted RUSTED_BENCH=target/release/rusted-bench \\
        ~/.cache/rusted-ci-venv/bin/python benches/stalls.py

Env: RUSTED_BIN, RUSTED_BENCH (required), ETCD_BIN=etcd, PARTS="defrag ranges watchers leases",
KINDS="etcd rusted" (which systems), KEEP (set: keep each member's directory and log),
DEFRAG_KEYS=300000, RANGE_KEYS=120000, RANGE_CLIENTS="16 64", RANGE_STALLED=64,
RANGE_STALL_SECONDS=20, WATCHERS=100, LEASES=100000,
LEASE_DELAY=75 (s from the first grant to the common expiry),
IP=127.0.0.181 (etcd on IP, rusted on IP+1). Needs python's etcd3. Not part of the default
test suite; prints a Markdown table per part.
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import etcd3

RUSTED = os.environ["RUSTED_BIN"]
BENCH = os.environ["RUSTED_BENCH"]
ETCD = os.environ.get("ETCD_BIN", "etcd")
PARTS = os.environ.get("PARTS", "defrag ranges watchers leases").split()
KINDS = os.environ.get("KINDS", "etcd rusted").split()
DEFRAG_KEYS = int(os.environ.get("DEFRAG_KEYS", "300000"))
RANGE_KEYS = int(os.environ.get("RANGE_KEYS", "120000"))
RANGE_CLIENTS = [int(x) for x in os.environ.get("RANGE_CLIENTS", "16 64").split()]
STALLED = int(os.environ.get("RANGE_STALLED", "64"))
STALL_SECONDS = int(os.environ.get("RANGE_STALL_SECONDS", "20"))
WATCHERS = int(os.environ.get("WATCHERS", "100"))
LEASES = int(os.environ.get("LEASES", "100000"))
BASE = os.environ.get("IP", "127.0.0.181")
# Seconds from the first grant to the common expiry (the grants must finish well before).
LEASE_DELAY = float(os.environ.get("LEASE_DELAY", "75"))


def ip_of(n):
    head, last = BASE.rsplit(".", 1)
    return "%s.%d" % (head, int(last) + n)


class Member:
    def __init__(self, kind):
        self.kind = kind
        self.ip = ip_of(0 if kind == "etcd" else 1)
        self.work = tempfile.mkdtemp(prefix="stalls-%s." % kind)
        a = self.ip
        self.log = open(os.path.join(self.work, "log"), "wb")
        self.proc = subprocess.Popen(
            [ETCD if kind == "etcd" else RUSTED, "--name", "s", "--data-dir", os.path.join(self.work, "d"),
             "--listen-client-urls", "http://%s:2379" % a, "--advertise-client-urls", "http://%s:2379" % a,
             "--listen-peer-urls", "http://%s:2380" % a, "--initial-advertise-peer-urls", "http://%s:2380" % a,
             "--initial-cluster", "s=http://%s:2380" % a, "--quota-backend-bytes", str(8 << 30)],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while True:
            try:
                self.client().status()
                break
            except Exception:
                if time.time() > deadline:
                    sys.exit("%s did not start" % kind)
                time.sleep(0.2)

    def client(self, timeout=30):
        return etcd3.client(host=self.ip, port=2379, timeout=timeout)

    def kb(self, field):
        try:
            for line in open("/proc/%d/status" % self.proc.pid):
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if not os.environ.get("KEEP"):
            subprocess.run(["rm", "-rf", self.work])


class Peak(threading.Thread):
    """Samples a member's VmRSS every 50 ms; `peak` in MB."""

    def __init__(self, m):
        super().__init__(daemon=True)
        self.m, self.peak, self.halt = m, 0, threading.Event()

    def run(self):
        while not self.halt.is_set():
            self.peak = max(self.peak, self.m.kb("VmRSS") // 1024)
            time.sleep(0.05)

    def stop(self):
        self.halt.set()
        self.join()
        return self.peak


def bench(m, *args):
    r = subprocess.run([BENCH, "--endpoints", "%s:2379" % m.ip, "--json"] + list(args),
                       capture_output=True, text=True)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        sys.exit("rusted-bench %s failed: %s" % (" ".join(args), r.stderr[-500:]))


def fill(m, n, val=1024):
    bench(m, "--conns", "8", "--clients", "64", "put", "--total", str(n), "--val-size", str(val),
          "--key-size", "16", "--key-space-size", str(n), "--sequential-keys")


# --- a raw HTTP/2 gRPC client: sends one request, counts and drops what comes back ---

def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def grpc_call(addr, path, message, end_stream=True, read=True):
    """Opens a connection, sends `message` to `path`; with `read`, drains the answer and
    returns its DATA bytes (None if the call did not end with trailers). Without `read`,
    returns the socket, never read again."""
    s = socket.create_connection(addr)
    block = b"".join(literal(k, v) for k, v in [
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", path), (b":authority", b"x"),
        (b"content-type", b"application/grpc"), (b"te", b"trailers")])
    window = 0x7FFFFFFF if read else 65535
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, struct.pack(">HI", 4, window))
    if read:
        out += frame(8, 0, 0, struct.pack(">I", 0x7FFFFFFF - 65535))
    out += frame(1, 4, 1, block) + frame(0, 1 if end_stream else 0, 1, b"\x00" + struct.pack(">I", len(message)) + message)
    s.sendall(out)
    if not read:
        return s
    buf, got = b"", 0
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                return None
            buf += chunk
            while len(buf) >= 9:
                n = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + n:
                    break
                kind, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                payload, buf = buf[9:9 + n], buf[9 + n:]
                if kind == 4 and not flags & 1:
                    s.sendall(frame(4, 1, 0))
                elif kind == 6 and not flags & 1:
                    s.sendall(frame(6, 1, 0, payload))
                elif kind == 0 and sid == 1:
                    got += n
                elif kind == 1 and sid == 1 and flags & 1:
                    return got
                elif kind in (3, 7):
                    return None
    finally:
        s.close()


RANGE_ALL = b"\x0a\x01\x00\x12\x01\x00"  # RangeRequest{key: "\0", range_end: "\0"}
WATCH_ALL = b"\x0a\x06" + RANGE_ALL  # WatchRequest{create_request: {key: "\0", range_end: "\0"}}


def part_defrag(m):
    fill(m, DEFRAG_KEYS)
    fill(m, DEFRAG_KEYS)
    c = m.client(timeout=600)
    rev = c.get_response("none").header.revision
    c.compact(rev, physical=True)
    before = c.status().db_size
    ops = {"put": [], "get": []}
    halt = threading.Event()

    def probe(kind):
        pc = m.client(timeout=60)
        while not halt.is_set():
            t = time.time()
            try:
                if kind == "put":
                    pc.put("probe", b"x" * 100)
                else:
                    pc.get("probe")  # linearizable by default
            except Exception:
                pass
            e = time.time()
            ops[kind].append((t, e))
            time.sleep(max(0.0, 1 / 400 - (e - t)))

    threads = [threading.Thread(target=probe, args=(k,), daemon=True) for k in ops]
    for t in threads:
        t.start()
    time.sleep(2)
    t0 = time.time()
    c.defragment()
    t1 = time.time()
    time.sleep(2)
    halt.set()
    for t in threads:
        t.join()
    worst = {k: max([e - s for s, e in v if e > t0 and s < t1] or [0]) for k, v in ops.items()}
    after = c.status().db_size
    return "| %s | %.0f → %.0f MB | %.2f s | %.0f ms | %.0f ms |" % (
        m.kind, before / 1e6, after / 1e6, t1 - t0, worst["put"] * 1000, worst["get"] * 1000)


def part_ranges(m):
    fill(m, RANGE_KEYS)
    time.sleep(2)
    base = m.kb("VmRSS") // 1024
    rows = []
    for n in RANGE_CLIENTS:
        peak = Peak(m)
        peak.start()
        results = [None] * n

        def one(i):
            try:
                results[i] = grpc_call((m.ip, 2379), b"/etcdserverpb.KV/Range", RANGE_ALL)
            except OSError:
                results[i] = None

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        p = peak.stop()
        whole = sum(1 for r in results if r and r > RANGE_KEYS * 1024)
        rows.append("| %s | %d | %d MB | %d MB (+%d) | %d of %d | %s |" % (
            m.kind, n, base, p, p - base, whole, n, "yes" if m.alive() else "no (killed)"))
        if not m.alive():
            break
        time.sleep(3)
    if STALLED and m.alive():
        # Callers that ask and never read: what the server holds for them is what it buffers.
        peak = Peak(m)
        peak.start()
        socks = [grpc_call((m.ip, 2379), b"/etcdserverpb.KV/Range", RANGE_ALL, read=False)
                 for _ in range(STALLED)]
        time.sleep(STALL_SECONDS)
        p = peak.stop()
        for s in socks:
            s.close()
        rows.append("| %s | %d that never read (%d s) | %d MB | %d MB (+%d) | — | %s |" % (
            m.kind, STALLED, STALL_SECONDS, base, p, p - base, "yes" if m.alive() else "no (killed)"))
    return "\n".join(rows)


def part_watchers(m):
    time.sleep(1)
    base = m.kb("VmRSS") // 1024
    socks = [grpc_call((m.ip, 2379), b"/etcdserverpb.Watch/Watch", WATCH_ALL, end_stream=False, read=False)
             for _ in range(WATCHERS)]
    peak = Peak(m)
    peak.start()
    r = bench(m, "--conns", "4", "--clients", "16", "put", "--rate", "5000", "--total", "150000",
              "--val-size", "256", "--key-space-size", "100000")
    p = peak.stop()
    for s in socks:
        s.close()
    return "| %s | %d MB | %d MB (+%d) | %.0f | %.1f ms | %s |" % (
        m.kind, base, p, p - base, r["requests_per_sec"], r["percentiles"]["p99"] * 1000,
        "yes" if m.alive() else "no (killed)")


def part_leases(m):
    expire_at = time.time() + LEASE_DELAY
    granted = [0]
    lock = threading.Lock()

    def grant(k):
        c = m.client(timeout=30)
        for _ in range(k):
            ttl = max(1, int(expire_at - time.time()))
            try:
                c.lease(ttl)
                with lock:
                    granted[0] += 1
            except Exception:
                pass

    threads = [threading.Thread(target=grant, args=(LEASES // 8,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    late = time.time() > expire_at - 10
    time.sleep(max(0.0, expire_at - 5 - time.time()))
    r = bench(m, "--conns", "2", "--clients", "4", "put", "--rate", "1000", "--total", "20000",
              "--val-size", "256", "--key-space-size", "10000")
    return "| %s | %d%s | %.1f ms | %.0f ms | %d |" % (
        m.kind, granted[0], " (grants ran late)" if late else "", r["percentiles"]["p99"] * 1000,
        r["slowest"] * 1000, r["errors"])


HEADS = {
    "defrag": "| system | db size before → after | defrag took | slowest put during it | slowest linearizable get during it |\n|---|---|---|---|---|",
    "ranges": "| system | concurrent full ranges | RSS before | peak RSS | answers whole | server alive |\n|---|---|---|---|---|---|",
    "watchers": "| system | RSS before | peak RSS | puts/s | put p99 | server alive |\n|---|---|---|---|---|---|",
    "leases": "| system | leases expiring in one second | put p99 | slowest put | put errors |\n|---|---|---|---|---|",
}


def main():
    print("# stalls (issue 26), %s" % time.strftime("%Y-%m-%d"), flush=True)
    for part in PARTS:
        rows = []
        for kind in KINDS:
            m = Member(kind)
            try:
                rows.append(globals()["part_" + part](m))
            finally:
                m.stop()
            print("  %s %s done" % (part, kind), file=sys.stderr, flush=True)
        print("\n## %s\n\n%s\n%s" % (part, HEADS[part], "\n".join(rows)), flush=True)


if __name__ == "__main__":
    main()
