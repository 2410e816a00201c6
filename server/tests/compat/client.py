#!/usr/bin/env python3
"""Drive a server with the python etcd3 client through a deterministic
sequence; one line (or a few) per step.

Usage: client.py ENDPOINT            (e.g. 127.0.0.2:2379)

IDs are printed as %016x hex so that normalize.py can replace them; expected
failures are printed as the exception's class name and its message (for gRPC
errors: the status code and details, since str() holds timestamps).
"""
import os
import queue
import sys
import threading
import time

try:
    import etcd3
    import etcd3.etcdrpc as pb
    import grpc
except ImportError as e:  # pragma: no cover
    sys.exit("client.py: cannot import etcd3 (%s); install: pip install etcd3 'protobuf<4'" % e)

EP = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:2379"
HOST, PORT = EP.rsplit(":", 1)
c = etcd3.client(host=HOST, port=int(PORT), timeout=10)

LAST_STEP = ["(start)"]


def watchdog(limit=45.0):
    """Fail visibly instead of hanging when a server never answers."""
    def fire():
        print("### WATCHDOG: client.py still running after %.0f s, in step %s; giving up"
              % (limit, LAST_STEP[0]), flush=True)
        os._exit(3)
    t = threading.Timer(limit, fire)
    t.daemon = True
    t.start()


watchdog()


def out(*parts, **kw):
    print(*parts, flush=True, **kw)


def step(name):
    LAST_STEP[0] = name
    out("### %s" % name)


def err(e):
    if isinstance(e, grpc.RpcError) and hasattr(e, "code"):
        return "%s code=%s details=%s" % (type(e).__name__, e.code().name, e.details())
    if isinstance(e, etcd3.exceptions.RevisionCompactedError):
        return "%s compacted_revision=%d" % (type(e).__name__, e.compacted_revision)
    return "%s: %s" % (type(e).__name__, e)


def attempt(name, fn):
    """Run fn, print its result or its exception."""
    step(name)
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001 - printing is the point
        out("error:", err(e))
        return None
    if r is not None:
        out(r)
    return r


def s(b):
    if b is None:
        return None
    if isinstance(b, bytes):
        return b.decode("utf-8", "backslashreplace")
    return b


def hx(i):
    return "%016x" % i


def hdr(h):
    return "header(revision=%d cluster_id=%s member_id=%s raft_term=%d)" % (
        h.revision, hx(h.cluster_id), hx(h.member_id), h.raft_term)


def kv(k):
    return "kv(key=%s value=%s create=%d mod=%d version=%d lease=%s)" % (
        s(k.key), s(k.value), k.create_revision, k.mod_revision, k.version,
        hx(k.lease) if k.lease else "0")


def meta(value, m):
    if m is None:
        return "value=%s meta=None" % s(value)
    return "value=%s key=%s create=%d mod=%d version=%d lease=%s" % (
        s(value), s(m.key), m.create_revision, m.mod_revision, m.version,
        hx(m.lease_id) if m.lease_id else "0")


def rng_resp(r):
    lines = [hdr(r.header) + " count=%d more=%s" % (r.count, r.more)]
    lines += ["  " + kv(k) for k in r.kvs]
    return "\n".join(lines)


def raw_range(key, range_end=None, **fields):
    req = pb.RangeRequest(key=key.encode(), **fields)
    if range_end is not None:
        req.range_end = range_end.encode()
    return rng_resp(c.kvstub.Range(req, 10))


def cur_rev():
    return c.kvstub.Range(pb.RangeRequest(key=b"compat-no-such-key"), 10).header.revision


def event_str(ev):
    t = type(ev).__name__
    line = "%s key=%s value=%s mod=%d version=%d" % (
        t, s(ev.key), s(ev.value), ev.mod_revision, ev.version)
    if ev._event.HasField("prev_kv"):
        line += " prev_value=%s prev_mod=%d" % (s(ev.prev_value), ev.prev_mod_revision)
    return line


def collect(q, want=None, quiet=0.6, first=3.0, limit=5.0):
    """Take watch callbacks from q until `want` events arrived, or (without
    want) until q stayed empty for `quiet` seconds after the first callback
    (waiting at most `first` s for that one); at most `limit` s in all."""
    got = []
    deadline = time.time() + limit
    while time.time() < deadline:
        wait = first if not got else (quiet if want is None else 0.1)
        try:
            item = q.get(timeout=wait)
        except queue.Empty:
            if want is None or len(got) >= want:
                break
            continue
        got.append(item)
        if want is not None and sum(
                len(x.events) if hasattr(x, "events") else 1 for x in got) >= want:
            break
    return got


def show_callbacks(items):
    n = 0
    for item in items:
        if isinstance(item, Exception):
            out("  callback error:", err(item))
            continue
        n += 1
        out("  response %d: header.revision=%d events=%d" % (n, item.header.revision, len(item.events)))
        for ev in item.events:
            out("    " + event_str(ev))


##########################################################################
step("connect / status")
st = c.status()
out("version=%s db_size=%d leader=%s raft_index=%d raft_term=%d" % (
    st.version, st.db_size, hx(st.leader.id) if st.leader else None, st.raft_index, st.raft_term))

attempt("members", lambda: "\n".join(
    "id=%s name=%s peer_urls=%s client_urls=%s" % (hx(m.id), m.name, list(m.peer_urls), list(m.client_urls))
    for m in c.members))

# ---- kv -------------------------------------------------------------------
attempt("put foo bar", lambda: hdr(c.put("foo", "bar").header))
for k, v in [("foo1", "bar1"), ("foo2", "bar2"), ("foo3", "bar3"), ("fop", "x"), ("zoo", "z")]:
    attempt("put %s %s" % (k, v), lambda k=k, v=v: c.put(k, v).header.revision)
attempt("put foo bar-2 prev_kv", lambda: kv(c.put("foo", "bar-2", prev_kv=True).prev_kv))
attempt("put new v prev_kv (no previous)", lambda: c.put("new", "v", prev_kv=True).HasField("prev_kv"))
attempt("put binary key/value", lambda: c.put(b"bin\x00\xff", b"\x01\x02\x00").header.revision)
attempt("get binary", lambda: meta(*c.get(b"bin\x00\xff")))
attempt("get foo", lambda: meta(*c.get("foo")))
attempt("get foo serializable", lambda: meta(*c.get("foo", serializable=True)))
attempt("get missing", lambda: meta(*c.get("missing")))
attempt("get_prefix foo", lambda: "\n".join(meta(v, m) for v, m in c.get_prefix("foo")))
attempt("get_prefix foo keys_only descend by mod", lambda: "\n".join(
    meta(v, m) for v, m in c.get_prefix("foo", keys_only=True, sort_order="descend", sort_target="mod")))
attempt("get_prefix foo ascend by value", lambda: "\n".join(
    meta(v, m) for v, m in c.get_prefix("foo", sort_order="ascend", sort_target="value")))
attempt("get_prefix foo descend by version", lambda: "\n".join(
    meta(v, m) for v, m in c.get_prefix("foo", sort_order="descend", sort_target="version")))
attempt("get_prefix foo descend by create", lambda: "\n".join(
    meta(v, m) for v, m in c.get_prefix("foo", sort_order="descend", sort_target="create")))
attempt("get_range foo1..foo3", lambda: "\n".join(meta(v, m) for v, m in c.get_range("foo1", "foo3")))
attempt("get_all", lambda: "\n".join(meta(v, m) for v, m in c.get_all()))
attempt("get_all keys_only sorted by key descend", lambda: "\n".join(
    meta(v, m) for v, m in c.get_all(keys_only=True, sort_order="descend")))
attempt("range foo..zoo limit=2", lambda: raw_range("foo", "zoo", limit=2))
attempt("range foo..zoo count_only", lambda: raw_range("foo", "zoo", count_only=True))
attempt("range foo revision=2", lambda: raw_range("foo", revision=2))
attempt("range foo revision=100000", lambda: raw_range("foo", revision=100000))
attempt("range all from-key (range_end=\\0)", lambda: raw_range("foo2", "\0", keys_only=True))
attempt("range min_mod_revision=5", lambda: raw_range("\0", "\0", min_mod_revision=5, keys_only=True))
attempt("range max_create_revision=3", lambda: raw_range("\0", "\0", max_create_revision=3, keys_only=True))
attempt("range empty key", lambda: raw_range(""))

attempt("delete foo3 prev_kv", lambda: (lambda r: "deleted=%d prev=%s" % (
    r.deleted, [kv(p) for p in r.prev_kvs]))(c.delete("foo3", prev_kv=True, return_response=True)))
attempt("delete foo3 again", lambda: c.delete("foo3"))
attempt("delete missing", lambda: c.delete("missing"))
for k in ("d/1", "d/2", "d/3"):
    c.put(k, "v")
attempt("delete_prefix d/", lambda: "deleted=%d" % c.delete_prefix("d/").deleted)
attempt("replace foo bar-2 -> bar-3", lambda: c.replace("foo", "bar-2", "bar-3"))
attempt("replace foo bar-2 -> bar-4 (stale)", lambda: c.replace("foo", "bar-2", "bar-4"))
attempt("put_if_not_exists foo", lambda: c.put_if_not_exists("foo", "x"))
attempt("put_if_not_exists brand-new", lambda: c.put_if_not_exists("brand-new", "x"))
attempt("get foo", lambda: meta(*c.get("foo")))

# ---- transactions -----------------------------------------------------------
T = c.transactions


def show_txn(r):
    ok, resps = r
    lines = ["succeeded=%s responses=%d" % (ok, len(resps))]
    for x in resps:
        if isinstance(x, list):
            lines.append("  range: " + ", ".join(meta(v, m) for v, m in x))
        else:
            kind = x.WhichOneof("response")
            inner = getattr(x, kind)
            extra = ""
            if kind == "response_delete_range":
                extra = " deleted=%d" % inner.deleted
            if kind == "response_put" and inner.HasField("prev_kv"):
                extra = " prev=" + kv(inner.prev_kv)
            if kind == "response_txn":
                extra = " succeeded=%s n=%d" % (inner.succeeded, len(inner.responses))
            lines.append("  %s revision=%d%s" % (kind, inner.header.revision, extra))
    return "\n".join(lines)


attempt("txn value==bar-3 & version>0 -> success", lambda: show_txn(c.transaction(
    compare=[T.value("foo") == "bar-3", T.version("foo1") > 0],
    success=[T.put("foo", "txn-ok"), T.get("foo1"), T.delete("foo2")],
    failure=[T.put("foo", "txn-fail")])))
attempt("txn value==nope -> failure", lambda: show_txn(c.transaction(
    compare=[T.value("foo") == "nope"],
    success=[T.put("foo", "never")],
    failure=[T.put("foo", "txn-failure"), T.get("foo"), T.get("fo", "fp")])))
attempt("txn create<100 & mod!=1 & version==0(missing)", lambda: show_txn(c.transaction(
    compare=[T.create("foo") < 100, T.mod("foo") != 1, T.version("missing") == 0],
    success=[T.get("foo")], failure=[])))
attempt("txn create>100 -> failure, empty ops", lambda: show_txn(c.transaction(
    compare=[T.create("foo") > 100], success=[], failure=[])))
attempt("txn nested", lambda: show_txn(c.transaction(
    compare=[], success=[T.txn(compare=[T.value("foo") == "txn-failure"],
                               success=[T.put("nested", "yes")], failure=[])], failure=[])))
attempt("txn duplicate put", lambda: show_txn(c.transaction(
    compare=[], success=[T.put("dup", "a"), T.put("dup", "b")], failure=[])))
attempt("txn 129 puts", lambda: show_txn(c.transaction(
    compare=[], success=[T.put("many/%d" % i, "v") for i in range(129)], failure=[])))
attempt("txn 128 puts", lambda: show_txn(c.transaction(
    compare=[], success=[T.put("many/%d" % i, "v") for i in range(128)], failure=[])).split("\n")[0])
attempt("get many/ count", lambda: raw_range("many/", "many0", count_only=True))

# ---- watch ------------------------------------------------------------------
step("watch_prefix foo start_revision=1 (history)")
q = queue.Queue()
wid = c.add_watch_prefix_callback("foo", q.put, start_revision=1)
show_callbacks(collect(q))
c.cancel_watch(wid)

step("watch foo start_revision=3 prev_kv (history)")
q = queue.Queue()
wid = c.add_watch_callback("foo", q.put, start_revision=3, prev_kv=True)
show_callbacks(collect(q))
c.cancel_watch(wid)

step("watch iterator foo start_revision=1 (first two events)")
events, cancel = c.watch("foo", start_revision=1)
got = []
for ev in events:
    got.append(event_str(ev))
    if len(got) == 2:
        break
cancel()
for g in got:
    out("  " + g)

step("live watch live/ (callback), then cancel")
q = queue.Queue()
wid = c.add_watch_prefix_callback("live/", q.put, prev_kv=True)
c.put("live/a", "1")
c.put("live/b", "2")
c.put("live/a", "3")
c.delete("live/b")
show_callbacks(collect(q, want=4))
c.cancel_watch(wid)
c.put("live/a", "after-cancel")
time.sleep(0.3)
out("  events after cancel: %d" % q.qsize())

step("watch_once foo timeout=0.5 (no event)")
try:
    c.watch_once("nothing-happens", timeout=0.5)
    out("  unexpected event")
except Exception as e:  # noqa: BLE001
    out("  error:", err(e))

step("watch_once fop start_revision=1")
try:
    out("  " + event_str(c.watch_once("fop", timeout=3, start_revision=1)))
except Exception as e:  # noqa: BLE001
    out("  error:", err(e))

# ---- leases -----------------------------------------------------------------
step("lease grant 60")
L = c.lease(60)
out("id=%s ttl=%d" % (hx(L.id), L.ttl))
attempt("put lk1 with lease", lambda: c.put("lk1", "v", lease=L).header.revision)
attempt("put lk2 with lease id", lambda: c.put("lk2", "v", lease=L.id).header.revision)
attempt("lease remaining_ttl in (0, 60]", lambda: 0 < L.remaining_ttl <= 60)
attempt("lease granted_ttl", lambda: L.granted_ttl)
attempt("lease keys (sorted)", lambda: sorted(s(k) for k in L.keys))
attempt("get lk1 lease", lambda: meta(*c.get("lk1")))
attempt("lease refresh", lambda: ["ID=%s TTL=%d" % (hx(r.ID), r.TTL) for r in L.refresh()])
attempt("get_lease_info", lambda: (lambda r: "ID=%s grantedTTL=%d TTL-in-range=%s keys=%s" % (
    hx(r.ID), r.grantedTTL, 0 < r.TTL <= 60, sorted(s(k) for k in r.keys)))(c.get_lease_info(L.id)))
attempt("lease grant ttl=1", lambda: (lambda l: "ttl=%d" % l.ttl)(c.lease(1)))
attempt("lease grant with id 0x1234abcd", lambda: (lambda l: "id=%s ttl=%d" % (hx(l.id), l.ttl))(c.lease(30, lease_id=0x1234abcd)))
attempt("lease grant with same id", lambda: c.lease(30, lease_id=0x1234abcd).id)
attempt("revoke 0x1234abcd", lambda: c.revoke_lease(0x1234abcd))
attempt("lease revoke", lambda: L.revoke())
attempt("get lk prefix after revoke", lambda: list(c.get_prefix("lk")))
attempt("get_lease_info revoked", lambda: (lambda r: "ID=%s TTL=%d grantedTTL=%d keys=%s" % (
    hx(r.ID), r.TTL, r.grantedTTL, list(r.keys)))(c.get_lease_info(L.id)))
attempt("lease revoke again", lambda: L.revoke())
attempt("lease refresh revoked", lambda: ["ID=%s TTL=%d" % (hx(r.ID), r.TTL) for r in L.refresh()])
attempt("put with unknown lease", lambda: c.put("badlease", "v", lease=0x7777))
attempt("lease grant ttl too large", lambda: c.lease(9999999999).ttl)

# ---- locks (client side in python-etcd3) -------------------------------------
# python-etcd3 0.12's Lock.acquire() breaks on recent tenacity releases as soon
# as it has to wait (its wait callback has an old signature), so contention is
# shown with the same transaction the lock uses, and waiting with watch_once.
def try_lock(lock):
    """One attempt of python-etcd3's lock transaction for `lock`."""
    lease = c.lease(lock.ttl)
    ok, _ = c.transaction(compare=[T.create(lock.key) == 0],
                          success=[T.put(lock.key, lock.uuid, lease=lease)],
                          failure=[T.get(lock.key)])
    if ok:
        lock.lease = lease
    else:
        lease.revoke()
    return ok


step("locks")
l1 = c.lock("py-lock", ttl=10)
l2 = c.lock("py-lock", ttl=10)
out("l1.acquire:", l1.acquire(timeout=2))
out("l1.is_acquired:", l1.is_acquired())
out("l2 try (held by l1):", try_lock(l2))
out("l2.is_acquired:", l2.is_acquired())
out("l1.refresh TTL:", [r.TTL for r in l1.refresh()])
out("l1 lock key lease attached:", meta(*c.get(l1.key)).split(" lease=")[1] != "0")
out("l1.release:", l1.release())
out("l1.release again:", l1.release())
out("l2.acquire:", l2.acquire(timeout=2))
out("l2.release:", l2.release())
with c.lock("py-lock2", ttl=10) as l3:
    out("context manager acquired:", l3.is_acquired())
out("after context manager:", l3.is_acquired())

step("lock wait for release (watch_once on the lock key)")
la = c.lock("py-lock3", ttl=10)
lb = c.lock("py-lock3", ttl=10)
out("la.acquire:", la.acquire(timeout=2))
out("lb try:", try_lock(lb))
t = threading.Timer(0.5, la.release)
t.start()
try:
    ev = c.watch_once(lb.key, timeout=5)
    out("lb saw:", type(ev).__name__, s(ev.key))
except Exception as e:  # noqa: BLE001
    out("lb watch error:", err(e))
t.join()
out("lb try after release:", try_lock(lb))
out("lb.is_acquired:", lb.is_acquired())
out("lb.release:", lb.release())

# ---- compaction ---------------------------------------------------------------
step("compaction")
r0 = cur_rev()
c.put("cmp", "1")
c.put("cmp", "2")
c.put("cmp", "3")
out("compact rev+2:", c.compact(r0 + 2))
out("range cmp at rev+1:", end=" ")
try:
    out(raw_range("cmp", revision=r0 + 1))
except Exception as e:  # noqa: BLE001
    out("error:", err(e))
out("range cmp at rev+2:", raw_range("cmp", revision=r0 + 2))
try:
    c.compact(r0 + 2)
    out("compact again: ok")
except Exception as e:  # noqa: BLE001
    out("compact again: error:", err(e))
try:
    c.compact(100000)
    out("compact future: ok")
except Exception as e:  # noqa: BLE001
    out("compact future: error:", err(e))
out("compact physical rev+3:", c.compact(r0 + 3, physical=True))

step("watch from a compacted revision")
q = queue.Queue()
try:
    wid = c.add_watch_callback("cmp", q.put, start_revision=r0 + 1)
    out("  watch created")
    show_callbacks(collect(q))
    c.cancel_watch(wid)
except Exception as e:  # noqa: BLE001
    out("  error:", err(e))

step("watch_prefix iterator from a compacted revision")
try:
    events, cancel = c.watch_prefix("cmp", start_revision=1)
    for ev in events:
        out("  " + event_str(ev))
        break
    cancel()
except Exception as e:  # noqa: BLE001
    out("  error:", err(e))

# ---- bad input ----------------------------------------------------------------
attempt("put value of 1.6 MB", lambda: c.put("big", "a" * 1600000))
attempt("put value of 1 MB", lambda: c.put("okbig", "b" * 1000000).header.revision)
attempt("put empty key", lambda: c.put("", "v"))
attempt("range future revision", lambda: raw_range("foo", revision=100000))
attempt("range compacted revision", lambda: raw_range("foo", revision=1))

# ---- maintenance ----------------------------------------------------------------
attempt("list_alarms", lambda: list(c.list_alarms()))
attempt("defragment", lambda: c.defragment())
step("snapshot")


class Sink:
    def __init__(self):
        self.n = 0

    def write(self, b):
        self.n += len(b)


sink = Sink()
try:
    c.snapshot(sink)
    out("snapshot bytes > 0:", sink.n > 0)
except Exception as e:  # noqa: BLE001
    out("error:", err(e))
attempt("hash is int", lambda: isinstance(c.hash(), int))
step("final status")
st = c.status()
out("version=%s leader=%s raft_term=%d" % (st.version, hx(st.leader.id) if st.leader else None, st.raft_term))
attempt("final get_all keys (many/* counted)", lambda: (lambda ks: "%s + %d many/* keys" % (
    [k for k in ks if not k.startswith("many/")], sum(k.startswith("many/") for k in ks)))(
    [s(m.key) for v, m in c.get_all(keys_only=True)]))
out("### done")
# close() races with python-etcd3's watch thread (which then prints a
# traceback at random); the process simply ends here instead
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
