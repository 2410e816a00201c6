#!/usr/bin/env python3
"""Normalize the output of the compatibility scripts (stdin -> stdout).

Things that legitimately differ between two servers (or two runs of the same
server) are replaced by placeholders:

  * member, cluster and lease IDs      -> ID1, ID2, ... (numbered by first
    appearance; the hex form and the decimal form of one ID get the same
    placeholder, so "lease 694d7f1ae3c1460a" and "id":7587... stay linked)
  * raft term / raft index             -> TERM / INDEX
  * database sizes, snapshot sizes     -> SIZE
  * snapshot hashes                    -> HASH
  * server versions ("3.4.23")         -> VERSION
  * remaining TTLs of leases           -> TTL (granted TTLs are kept)
  * durations, timestamps, client UUIDs-> DURATION, TS, UUID
  * the server's address               -> ADDR (127.0.0.2 / .3; .21 / .22 in tls.sh, .23 / .24 in flags.sh, .25 / .26 in auth.sh)
  * temporary paths                    -> TMP
  * HTTP Date / Content-Length headers -> dropped values
  * ASCII tables: column padding is collapsed, since cell widths follow the
    (normalized) contents

Revisions, counts, keys, values, error messages and exit codes are NOT touched:
they must be identical.
"""
import base64
import os
import re
import sys

ID_MAP = {}


def id_ph(value):
    """Placeholder for an ID given as an int. 0 stays 0 (means 'none')."""
    if value == 0:
        return "0"
    if value not in ID_MAP:
        ID_MAP[value] = "ID%d" % (len(ID_MAP) + 1)
    return ID_MAP[value]


def hex_ph(h):
    return id_ph(int(h, 16))


def dec_ph(d):
    return id_ph(int(d))


# JSON / fields keys whose (decimal, possibly quoted) value is an ID.
ID_KEYS = [
    "cluster_id", "member_id", "leader", "ID", "id", "lease", "Lease",
    "ClusterID", "MemberID", "memberID", "LeaseID", "lease_id", "member",
    "Leader",
]
TERM_KEYS = ["raft_term", "raftTerm", "RaftTerm"]
INDEX_KEYS = ["raft_index", "raftIndex", "raftAppliedIndex", "RaftIndex",
              "RaftAppliedIndex", "applied_index"]
SIZE_KEYS = ["dbSize", "dbSizeInUse", "totalSize", "size", "db_size",
             "db_size_in_use", "DbSize", "DBSize", "DBSizeInUse"]
HASH_KEYS = ["hash", "Hash"]
TIME_KEYS = ["ts", "time", "took"]

# Table columns to normalize (header name -> replacement function).
def _col_id(v):
    v = v.strip()
    if re.fullmatch(r"[0-9a-f]+", v):
        return hex_ph(v)
    return v


TABLE_COLS = {
    "ID": _col_id,
    "VERSION": lambda v: "VERSION" if v.strip() else v,
    "DB SIZE": lambda v: "SIZE",
    "RAFT TERM": lambda v: "TERM",
    "RAFT INDEX": lambda v: "INDEX",
    "RAFT APPLIED INDEX": lambda v: "INDEX",
    "HASH": lambda v: "HASH",
    "TOTAL SIZE": lambda v: "SIZE",
    "TOOK": lambda v: "DURATION",
}

KEY_ALT = lambda keys: "|".join(re.escape(k) for k in keys)

# "key":123  "key":"123"  "key" : 123 (etcdctl -w fields)  key=123 (client.py)
def keyed(keys):
    return re.compile(
        r'(?P<pre>"(?:%s)"\s*:\s*"?|\b(?:%s)=)(?P<val>-?\d+)(?![\w.])' % (KEY_ALT(keys), KEY_ALT(keys)))


RE_ID = keyed(ID_KEYS)
RE_TERM = keyed(TERM_KEYS)
RE_INDEX = keyed(INDEX_KEYS)
RE_SIZE = keyed(SIZE_KEYS)
RE_HASH = keyed(HASH_KEYS)
RE_SIZE_STR = re.compile(r'(?P<pre>"(?:%s)"\s*:\s*")(?P<val>[0-9.]+ ?[kMG]?B)"' % KEY_ALT(SIZE_KEYS))
RE_TIME_STR = re.compile(r'(?P<pre>"(?:%s)"\s*:\s*)(?P<val>"[^"]*"|-?[0-9.e+-]+)' % KEY_ALT(TIME_KEYS))
RE_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RE_ADDR = re.compile(r"\b127\.0\.0\.(?:2|3|21|22|23|24|25|26)\b")
RE_VERSION = re.compile(r"(?<![\d.])\d+\.\d+\.\d+(?:-[A-Za-z0-9.]+)?(?![\d.])")
# Go-style durations as printed by etcdctl ("took = 1.48ms", "958.8µs",
# "1m2.5s"); a plain integer number of seconds ("TTL(2s)") is NOT a duration
# here, granted TTLs must stay.
RE_DURATION = re.compile(r"(?<![\w.])(?:\d+m)?(?:\d+\.\d+(?:ns|µs|us|ms|s)|\d+(?:ns|µs|us|ms))(?![\w(])")
RE_HUMAN_SIZE = re.compile(r"\b\d+(?:\.\d+)? (?:B|kB|MB|GB)\b")
# Hex IDs as etcdctl prints them (%016x or %x). Require a letter so that plain
# numbers are never taken for IDs.
RE_HEX_ID = re.compile(r"(?<![0-9A-Za-z_])(?=[0-9a-f]*[a-f])[0-9a-f]{10,16}(?![0-9A-Za-z_])")
# Contexts where an ID may be short or all digits.
RE_LEASE_LINE = re.compile(r"\blease ([0-9a-f]+) (?=granted|keepalived|revoked|already expired|expired|not found)")
RE_LOCKKEY = re.compile(r"\b((?:lock|elect)[\w-]*/)([0-9a-f]+)\b")
RE_MEMBER_SIMPLE = re.compile(r"^([0-9a-f]+)(, (?:started|unstarted), )")
RE_B64_KEY = re.compile(r'("key"\s*:\s*")([A-Za-z0-9+/=]+)(")')
RE_TTL_JSON = re.compile(r'("(?:ttl|TTL)"\s*:\s*"?)(-?\d+)')
RE_REMAINING = re.compile(r"remaining\(-?\d+s\)")
RE_SNAP_SIMPLE = re.compile(r"^[0-9a-f]{1,8}, (\d+), (\d+), .*$")
RE_STATUS_SIMPLE = re.compile(
    r"^(ADDR:\d+), ([0-9a-f]+|ID\d+), ([^,]+), ([^,]+), (true|false), (true|false), (\d+), (\d+), (\d+), (.*)$")

TMP_PREFIXES = [p for p in os.environ.get("COMPAT_TMP", "").split(":") if p]
RE_TMP = re.compile(r"/tmp/rusted-compat\.[A-Za-z0-9]+")


def time_ph(m):
    word = "DURATION" if '"took"' in m.group("pre") else "TS"
    quoted = m.group("val").startswith('"')
    return m.group("pre") + ('"%s"' % word if quoted else word)


def sub_keyed(rx, line, fn):
    return rx.sub(lambda m: m.group("pre") + fn(m.group("val")), line)


def fix_b64_key(m):
    raw = m.group(2)
    try:
        dec = base64.b64decode(raw, validate=True).decode("ascii")
    except Exception:
        return m.group(0)
    if not dec.isprintable():
        return m.group(0)
    new = RE_LOCKKEY.sub(lambda mm: mm.group(1) + hex_ph(mm.group(2)), dec)
    if new == dec:
        return m.group(0)
    return m.group(1) + "b64(" + new + ")" + m.group(3)


def tmp_addr(line):
    for p in TMP_PREFIXES:
        line = line.replace(p, "TMP")
    line = RE_TMP.sub("TMP", line)
    return RE_ADDR.sub("ADDR", line)


RE_CAPNSLOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} ")


def normalize_line(line):
    line = tmp_addr(line)
    line = RE_CAPNSLOG.sub("TS ", line)
    line = RE_UUID.sub("UUID", line)
    # timestamps and durations in keyed form first (etcdctl's log lines)
    line = RE_TIME_STR.sub(time_ph, line)
    line = RE_SIZE_STR.sub(lambda m: m.group("pre") + 'SIZE"', line)
    # lock / election keys carry a lease ID; base64 ones are decoded
    line = RE_B64_KEY.sub(fix_b64_key, line)
    line = RE_LOCKKEY.sub(lambda m: m.group(1) + hex_ph(m.group(2)), line)
    line = RE_LEASE_LINE.sub(lambda m: "lease " + hex_ph(m.group(1)) + " ", line)
    line = RE_MEMBER_SIMPLE.sub(lambda m: hex_ph(m.group(1)) + m.group(2), line)
    # remaining TTL (only where a granted TTL sits beside it)
    if "granted-ttl" in line or "grantedTTL" in line or "granted_ttl" in line:
        line = RE_TTL_JSON.sub(lambda m: m.group(1) + "TTL", line)
    line = RE_REMAINING.sub("remaining(TTL)", line)
    line = sub_keyed(RE_ID, line, dec_ph)
    line = sub_keyed(RE_TERM, line, lambda v: "TERM")
    line = sub_keyed(RE_INDEX, line, lambda v: "INDEX")
    line = sub_keyed(RE_SIZE, line, lambda v: "SIZE")
    line = sub_keyed(RE_HASH, line, lambda v: "HASH")
    line = RE_HEX_ID.sub(lambda m: hex_ph(m.group(0)), line)
    line = RE_VERSION.sub("VERSION", line)
    line = RE_HUMAN_SIZE.sub("SIZE", line)
    line = RE_DURATION.sub("DURATION", line)
    m = RE_SNAP_SIMPLE.match(line)
    if m:
        line = "HASH, %s, %s, SIZE" % (m.group(1), m.group(2))
    m = RE_STATUS_SIMPLE.match(line)
    if m:
        g = list(m.groups())
        g[1] = hex_ph(g[1]) if not g[1].startswith("ID") else g[1]
        g[2] = "VERSION"
        g[3] = "SIZE"
        g[6] = "TERM"
        g[7] = "INDEX"
        g[8] = "INDEX"
        line = ", ".join(g)
    if re.match(r"(?i)^(date|content-length):", line):
        line = line.split(":", 1)[0] + ": X"
    return line


def split_row(line):
    return line.strip().strip("|").split("|")


def normalize(lines):
    out = []
    table_cols = None  # list of normalizer functions (or None) per column
    for raw in lines:
        line = raw.rstrip("\n")
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            cells = split_row(stripped)
            names = [c.strip() for c in cells]
            if table_cols is None:
                # header row
                table_cols = [TABLE_COLS.get(n) for n in names]
                new = names
            else:
                new = []
                for i, c in enumerate(cells):
                    fn = table_cols[i] if i < len(table_cols) else None
                    c = normalize_line(c.strip())
                    if fn is not None and c != "":
                        c = fn(c)
                    new.append(c)
            out.append("| " + " | ".join(new) + " |")
            continue
        if stripped.startswith("+-") and stripped.endswith("+"):
            out.append("+-+")
            continue
        if table_cols is not None and not stripped.startswith(("|", "+")):
            table_cols = None
        if line.startswith("### "):
            # step headers hold the literal arguments, identical for both
            # servers (IDs are shown symbolically); only paths and addresses
            out.append(tmp_addr(line))
            continue
        out.append(normalize_line(line))
    return out


def steps(path):
    """Split a normalized output into steps (a '### ' line and what follows)."""
    blocks, cur = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("### ") and cur:
                blocks.append("".join(cur))
                cur = []
            cur.append(line)
    if cur:
        blocks.append("".join(cur))
    return blocks


def count_steps(a_path, b_path):
    """'N of M steps differ' for two normalized outputs (used by run.sh)."""
    import difflib
    a, b = steps(a_path), steps(b_path)
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    same = sum(size for _, _, size in sm.get_matching_blocks())
    return "%d of %d steps differ" % (max(len(a), len(b)) - same, len(a))


# Member lists are ordered by member ID, and an added member's ID is random: rows of one list
# (simple or table form), members in a JSON array and the entries of etcdctl's
# ETCD_INITIAL_CLUSTER line are put in a fixed order, after the IDs became placeholders.
RE_MEMBER_ROW = re.compile(r"^(\| )?ID\d+ ?(,| \|) +(started|unstarted)")
RE_MEMBERS_JSON = re.compile(r'"members":\[(\{[^\[\]{}]*(?:\[[^\]]*\][^\[\]{}]*)*\}(?:,\{[^\[\]{}]*(?:\[[^\]]*\][^\[\]{}]*)*\})*)\]')
RE_MEMBER_OBJ = re.compile(r'\{[^\[\]{}]*(?:\[[^\]]*\][^\[\]{}]*)*\}')
RE_INITIAL_CLUSTER = re.compile(r'^(ETCD_INITIAL_CLUSTER=")([^"]*)(")$')


def member_order(lines):
    out, run = [], []
    for line in lines + [None]:
        if line is not None and RE_MEMBER_ROW.match(line):
            run.append(line)
            continue
        out.extend(sorted(run))
        run = []
        if line is None:
            break
        line = re.sub(r"^Member +", "Member ", line)
        line = RE_INITIAL_CLUSTER.sub(
            lambda m: m.group(1) + ",".join(sorted(m.group(2).split(","))) + m.group(3), line)
        line = RE_MEMBERS_JSON.sub(
            lambda m: '"members":[' + ",".join(sorted(RE_MEMBER_OBJ.findall(m.group(1)))) + "]",
            line)
        out.append(line)
    return out


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--count-steps":
        print(count_steps(sys.argv[2], sys.argv[3]))
        return
    data = sys.stdin.read().splitlines()
    for line in member_order(normalize(data)):
        sys.stdout.write(line + "\n")


if __name__ == "__main__":
    main()
