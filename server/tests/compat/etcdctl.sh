#!/usr/bin/env bash
# Drive a server with etcdctl (API v3) through a fixed, deterministic sequence.
# Usage: etcdctl.sh ENDPOINT      (e.g. 127.0.0.2:2379)
# Env:   ETCDCTL_BIN (default etcdctl), COMPAT_WORK (scratch dir, default: mktemp)
# Every command prints "### <command>", its merged stdout+stderr, and "exit=N".
set -u
. "$(dirname "$0")/quiet.sh"
EP=${1:?usage: etcdctl.sh ENDPOINT}
ETCDCTL_BIN=${ETCDCTL_BIN:-etcdctl}
# etcdctl warns about every unknown ETCDCTL_* variable in its environment
export -n ETCDCTL_BIN
export ETCDCTL_API=3
if [ -n "${COMPAT_WORK:-}" ]; then
    W=$COMPAT_WORK/etcdctl
    mkdir -p "$W"
else
    W=$(mktemp -d /tmp/rusted-compat.XXXXXX)
fi

BG_PIDS=()
cleanup() {
    local p
    for p in "${BG_PIDS[@]:-}"; do
        [ -n "$p" ] && kill -TERM "$p" 2>/dev/null
    done
    wait 2>/dev/null
}
trap cleanup EXIT

ctl() { "$ETCDCTL_BIN" --endpoints="$EP" "$@"; }

# run ARGS...            : header shows the arguments as given
run() {
    printf '### etcdctl %s\n' "$*"
    ctl "$@" 2>&1
    echo "exit=$?"
}
# runl LABEL ARGS...     : header shows LABEL instead of the arguments
# (used where an argument is an ID that differs between servers)
runl() {
    local label=$1
    shift
    printf '### etcdctl %s\n' "$label"
    ctl "$@" 2>&1
    echo "exit=$?"
}
# run_in FILE ARGS...    : command reads FILE on stdin; the input is shown
run_in() {
    local f=$1
    shift
    printf '### etcdctl %s < %s\n' "$*" "$(basename "$f")"
    sed 's/^/# stdin| /' "$f"
    ctl "$@" <"$f" 2>&1
    echo "exit=$?"
}
# run_to SECONDS ARGS... : a streaming command stopped by timeout (SIGTERM)
run_to() {
    local t=$1
    shift
    printf '### timeout %s etcdctl %s\n' "$t" "$*"
    timeout "$t" "$ETCDCTL_BIN" --endpoints="$EP" "$@" 2>&1
    echo "exit=$?"
}
# stream_l LABEL ARGS... : a streaming command (watch, elect --listen) that
# does not end by itself.  It runs in the background until its output has been
# quiet for 0.6 s (at most 4 s), then gets SIGTERM; prints its output and exit
# status (143 when it was stopped, its own status when it ended by itself).
stream_l() {
    local label=$1
    shift
    printf '### etcdctl %s\n' "$label"
    local f=$W/stream.out
    : >"$f"
    "$ETCDCTL_BIN" --endpoints="$EP" "$@" >"$f" 2>&1 &
    local p=$! rc
    wait_quiet "$p" "$f"
    { kill -TERM "$p"; wait "$p"; } 2>/dev/null
    rc=$?
    cat "$f"
    echo "exit=$rc"
}
stream() { stream_l "$*" "$@"; }
note() { printf '### -- %s\n' "$*"; }

# wait_for FILE PATTERN SECONDS: wait until FILE has a line matching PATTERN
wait_for() {
    local f=$1 pat=$2 t=$3 i=0
    while [ $i -lt $((t * 20)) ]; do
        grep -q -- "$pat" "$f" 2>/dev/null && return 0
        sleep 0.05
        i=$((i + 1))
    done
    echo "(timed out waiting for '$pat' in $(basename "$f"))"
    return 1
}
# wait_lines FILE N SECONDS: wait until FILE has at least N lines
wait_lines() {
    local f=$1 n=$2 t=$3 i=0
    while [ $i -lt $((t * 20)) ]; do
        # The file may not exist yet: test first (a failed redirection would print an error).
        [ -f "$f" ] && [ "$(wc -l <"$f")" -ge "$n" ] && return 0
        sleep 0.05
        i=$((i + 1))
    done
    echo "(timed out waiting for $n lines in $(basename "$f"))"
    return 1
}
# current revision of the store
currev() {
    ctl get compat-no-such-key -w json 2>/dev/null | sed -n 's/.*"revision":\([0-9]*\).*/\1/p'
}
show() { # show FILE LABEL
    echo "--- $2:"
    cat "$1"
    echo "--- end"
}

###########################################################################
note "put"
run put foo bar
run put foo1 bar1
run put foo2 bar2
run put foo3 bar3
run put fop x
run put zoo z
run put -- -dash -value
run put "with space" "v v"
run put foo bar-2 --prev-kv
run put foo bar-3 --prev-kv -w json
run put fresh v --prev-kv
run put foo1 --ignore-value
run put nokey --ignore-value
run put "" empty-key
run put foo bar-4 -w fields

note "get"
run get foo
run get foo -w json
run get foo -w fields
run get -- -dash
run get "with space"
run get nokey
run get nokey -w json
run get foo --prefix
run get foo zoo
run get foo --prefix --limit 2
run get foo --prefix --limit 2 -w json
run get foo --prefix --keys-only
run get foo --prefix --print-value-only
run get foo --prefix --sort-by=KEY --order=DESCEND
run get foo --prefix --sort-by=VALUE --order=ASCEND
run get foo --prefix --sort-by=VERSION --order=DESCEND
run get foo --prefix --sort-by=CREATE --order=DESCEND
run get foo --prefix --sort-by=MODIFY --order=DESCEND
run get foo --prefix --sort-by=MODIFY
run get --from-key foo2
run get --from-key foo2 --keys-only --limit 2
run get --from-key "" --keys-only
run get "" --prefix --keys-only
run get foo --rev 2
run get foo --rev 3 -w json
run get foo --prefix --rev 4 -w fields
run get foo --consistency=s
run get foo --hex

note "del"
run del foo3
run del foo3
run del nokey -w json
run put d/1 a
run put d/2 b
run put d/3 c
run del d/ --prefix --prev-kv
run put e/1 a
run put e/2 b
run del e/ --prefix -w json
run put z1 a
run put z2 b
run del z1 --from-key --prev-kv -w json
run get "" --prefix --keys-only

note "txn"
cat >"$W/txn1" <<'EOF'
value("foo") = "bar-4"
version("foo1") > "0"
create("foo1") = "3"
mod("foo2") = "4"

put foo txn-ok
get foo1
del foo2

put foo txn-fail

EOF
run_in "$W/txn1" txn
cat >"$W/txn2" <<'EOF'
value("foo") = "nope"

put foo never

put foo txn-failure-branch
get foo
get fo --prefix

EOF
run_in "$W/txn2" txn -w json
cat >"$W/txn3" <<'EOF'
version("foo") != "0"
value("foo1") < "bar2"
mod("foo") > "1"
create("nokey") = "0"

get foo --prefix --keys-only --limit 2

get nokey

EOF
run_in "$W/txn3" txn
cat >"$W/txn4" <<'EOF'
version("foo") = "1"

put t1 a

put t2 b
put t3 c

EOF
run_in "$W/txn4" txn -w json
cat >"$W/txn5" <<'EOF'


put t-empty-cmp v
get t --prefix

EOF
run_in "$W/txn5" txn
run get t --prefix -w json

note "watch (history)"
stream watch foo --prefix --rev 1
stream watch foo --prefix --rev 1 --prev-kv
stream watch foo --prefix --rev 1 -w json
stream watch foo --rev 3 --prev-kv -w json
stream watch foo fop --rev 1
stream watch d/ --prefix --rev 1 --prev-kv -w json

note "watch (live)"
R=$(currev)
NEXT=$((R + 1))
timeout 8 "$ETCDCTL_BIN" --endpoints="$EP" watch live/ --prefix --prev-kv -w json --rev "$NEXT" >"$W/live.json" 2>&1 &
LIVE1=$!
timeout 8 "$ETCDCTL_BIN" --endpoints="$EP" watch live/a --rev "$NEXT" >"$W/live.simple" 2>&1 &
LIVE2=$!
BG_PIDS+=("$LIVE1" "$LIVE2")
sleep 1
run put live/a 1
run put live/b 2
run put live/a 3
run del live/ --prefix
wait_lines "$W/live.json" 4 5
wait_lines "$W/live.simple" 8 5
{ kill -TERM "$LIVE1" "$LIVE2"; wait "$LIVE1" "$LIVE2"; } 2>/dev/null
note "live watch output (watch live/ --prefix --prev-kv -w json --rev NEXT)"
show "$W/live.json" "live.json"
note "live watch output (watch live/a --rev NEXT)"
show "$W/live.simple" "live.simple"

note "client disconnects mid-stream (SIGKILL)"
"$ETCDCTL_BIN" --endpoints="$EP" watch "" --prefix >"$W/killed.out" 2>&1 &
KP=$!
BG_PIDS+=("$KP")
sleep 0.5
run put after-watch-start 1
wait_lines "$W/killed.out" 3 5
{ kill -KILL "$KP"; wait "$KP"; } 2>/dev/null
echo "killed watcher exit=$?"
show "$W/killed.out" "killed watcher"
run put after-kill 1
run get after --prefix
stream watch after-kill --rev 1

note "lease"
run lease grant 100
L1=$(ctl lease grant 100 2>/dev/null | awk '{print $2}')
# leases of TTL 1 and 0 get the minimum TTL; they are revoked right away so
# that "lease list" below does not depend on timing
for ttl in 1 0; do
    printf '### etcdctl lease grant %s\n' "$ttl"
    ctl lease grant "$ttl" >"$W/grant" 2>&1
    rc=$?
    cat "$W/grant"
    echo "exit=$rc"
    l=$(awk '/granted/{print $2}' "$W/grant")
    [ -n "$l" ] && ctl lease revoke "$l" >/dev/null 2>&1
done
run lease grant 100 -w json
runl "put lk1 v1 --lease=\$L1" put lk1 v1 --lease="$L1"
runl "lease timetolive \$L1" lease timetolive "$L1"
runl "lease timetolive \$L1 --keys" lease timetolive "$L1" --keys
runl "lease timetolive \$L1 --keys -w json" lease timetolive "$L1" --keys -w json
runl "lease keep-alive --once \$L1" lease keep-alive --once "$L1"
runl "lease keep-alive --once \$L1 -w json" lease keep-alive --once "$L1" -w json
runl "put lk2 v2 --lease=\$L1" put lk2 v2 --lease="$L1"
run get lk --prefix -w json
run lease list
run lease list -w json
runl "lease revoke \$L1" lease revoke "$L1"
run get lk --prefix
runl "lease timetolive \$L1" lease timetolive "$L1"
runl "lease timetolive \$L1 -w json" lease timetolive "$L1" -w json
runl "lease revoke \$L1" lease revoke "$L1"
runl "lease keep-alive --once \$L1" lease keep-alive --once "$L1"
run put badlease v --lease=1234abcd
run lease revoke 1234abcd
run lease timetolive 1234abcd
run lease keep-alive --once 1234abcd
run lease grant 9999999999
run get badlease
note "lease expiry (TTL 2, poll up to 8 s)"
L2=$(ctl lease grant 2 2>/dev/null | awk '{print $2}')
runl "put exp v --lease=\$L2" put exp v --lease="$L2"
i=0
while [ $i -lt 80 ] && [ -n "$(ctl get exp --keys-only 2>/dev/null)" ]; do
    sleep 0.1
    i=$((i + 1))
done
run get exp
runl "lease timetolive \$L2" lease timetolive "$L2"
stream watch exp --rev 1 -w json

note "lock"
run lock lock-a echo hello
run lock lock-a -- sh -c 'echo inside; exit 3'
run get lock-a --prefix
# holder A keeps the lock until $W/release exists; B waits behind it
rm -f "$W/release"
"$ETCDCTL_BIN" --endpoints="$EP" lock lock-a -- sh -c "echo A-acquired; while [ ! -e '$W/release' ]; do sleep 0.05; done; echo A-releasing" >"$W/lockA" 2>&1 &
LA=$!
BG_PIDS+=("$LA")
wait_for "$W/lockA" A-acquired 5
"$ETCDCTL_BIN" --endpoints="$EP" lock lock-a echo B-acquired >"$W/lockB" 2>&1 &
LB=$!
BG_PIDS+=("$LB")
# wait until B's key is queued behind A's
i=0
while [ $i -lt 100 ] && [ "$(ctl get lock-a --prefix --keys-only 2>/dev/null | grep -c .)" -lt 2 ]; do
    sleep 0.05
    i=$((i + 1))
done
sleep 0.3
run get lock-a --prefix --keys-only
show "$W/lockB" "B while A holds the lock"
touch "$W/release"
wait "$LA"
echo "A exit=$?"
wait "$LB"
echo "B exit=$?"
show "$W/lockA" "A"
show "$W/lockB" "B"
run get lock-a --prefix
# a lock held without a command, released by SIGTERM
"$ETCDCTL_BIN" --endpoints="$EP" lock lock-b >"$W/lockC" 2>&1 &
LC=$!
BG_PIDS+=("$LC")
wait_for "$W/lockC" "lock-b/" 5
run get lock-b --prefix --keys-only
kill -TERM "$LC"
wait "$LC"
echo "C exit=$?"
show "$W/lockC" "lock-b holder (stopped by SIGTERM)"
run get lock-b --prefix
run lock
run lock lock-c --ttl 0 echo zero-ttl

note "elect"
"$ETCDCTL_BIN" --endpoints="$EP" elect elect-a pA >"$W/electA" 2>&1 &
EA=$!
BG_PIDS+=("$EA")
wait_lines "$W/electA" 2 5
stream elect --listen elect-a
stream elect --listen elect-a -w json
"$ETCDCTL_BIN" --endpoints="$EP" elect elect-a pB >"$W/electB" 2>&1 &
EB=$!
BG_PIDS+=("$EB")
i=0
while [ $i -lt 100 ] && [ "$(ctl get elect-a --prefix --keys-only 2>/dev/null | grep -c .)" -lt 2 ]; do
    sleep 0.05
    i=$((i + 1))
done
sleep 0.3
run get elect-a --prefix
show "$W/electB" "B while A leads"
kill -TERM "$EA"
wait "$EA"
echo "A exit=$?"
wait_lines "$W/electB" 2 5
show "$W/electA" "A (stopped by SIGTERM)"
show "$W/electB" "B"
run get elect-a --prefix
stream elect --listen elect-a
kill -TERM "$EB"
wait "$EB"
echo "B exit=$?"
run get elect-a --prefix
run elect elect-a
run elect

note "cluster / maintenance"
run member list
run member list -w table
run member list -w json
run member list -w fields
run endpoint status
run endpoint status -w table
run endpoint status -w json
run endpoint status -w fields
run endpoint health
run endpoint health -w table
run endpoint health -w json
run alarm list
run alarm list -w json
run alarm disarm
run defrag
run snapshot save "$W/snap.db"
run snapshot status "$W/snap.db" -w table
run snapshot status "$W/snap.db" -w json
run snapshot status "$W/snap.db"
run get foo

note "compaction"
R=$(currev)
run put compact-me 1
run put compact-me 2
run put compact-me 3
C=$((R + 2))
runl "compaction \$REV-1" compaction $((R + 2))
runl "get compact-me --rev \$REV-3 (below compaction)" get compact-me --rev $((R + 1))
runl "get compact-me --rev \$REV-2 (= compaction)" get compact-me --rev "$C"
runl "get compact-me --rev \$REV-1" get compact-me --rev $((R + 3)) -w json
runl "compaction \$REV-1 (again)" compaction "$C"
runl "compaction \$REV-3 (older)" compaction $((R + 1))
run compaction 100000
stream_l "watch compact-me --rev \$REV-3 (compacted)" watch compact-me --rev $((R + 1))
stream_l "watch compact-me --rev \$REV-2 -w json" watch compact-me --rev "$C" -w json
runl "compaction --physical \$REV" compaction --physical $((R + 3))
run get compact-me -w json

note "bad input"
run get foo --rev 100000
run get foo --rev 100000 -w json
run put badlease2 v --lease=7fffffffffffffff
head -c 1600000 /dev/zero | tr '\0' 'a' >"$W/big.value"
printf '### etcdctl put big < big.value (1600000 bytes)\n'
ctl put big <"$W/big.value" 2>&1
echo "exit=$?"
head -c 1000000 /dev/zero | tr '\0' 'b' >"$W/ok.value"
printf '### etcdctl put okbig < ok.value (1000000 bytes)\n'
ctl put okbig <"$W/ok.value" 2>&1
echo "exit=$?"
printf '### etcdctl get okbig --print-value-only | wc -c\n'
ctl get okbig --print-value-only 2>&1 | wc -c
{
    printf '\n'
    for i in $(seq 1 129); do printf 'put many/%d v\n' "$i"; done
    printf '\n\n'
} >"$W/txn129"
printf '### etcdctl txn < txn129 (129 puts)\n'
ctl txn <"$W/txn129" 2>&1 | tail -n 3
echo "exit=${PIPESTATUS[0]}"
{
    printf '\n'
    for i in $(seq 1 128); do printf 'put many/%d v\n' "$i"; done
    printf '\n\n'
} >"$W/txn128"
printf '### etcdctl txn -w json < txn128 (128 puts), summarized\n'
ctl txn -w json <"$W/txn128" >"$W/txn128.out" 2>&1
echo "exit=$?"
sed 's/,"responses":.*//' "$W/txn128.out"
echo "ResponsePut count: $(grep -o '"ResponsePut":{"header":{"revision":[0-9]*}}' "$W/txn128.out" | sort | uniq -c)"
{
    printf '\n'
    for i in $(seq 1 64); do printf 'put many/%d v\n' "$i"; done
    printf '\n'
    for i in $(seq 1 65); do printf 'put many/%d v\n' "$i"; done
    printf '\n'
} >"$W/txn64-65"
printf '### etcdctl txn < txn64-65 (64 success puts, 65 failure puts)\n'
ctl txn <"$W/txn64-65" 2>&1 | tail -n 3
echo "exit=${PIPESTATUS[0]}"
run get many/ --prefix --keys-only --limit 3 -w json
{
    printf '\n'
    printf 'put dup a\n'
    printf 'put dup b\n'
    printf '\n\n'
} >"$W/txndup"
run_in "$W/txndup" txn
printf 'put x\n\n' >"$W/txnbad"
run_in "$W/txnbad" txn
run get foo --prefix --limit -1
run compaction 0
run get foo --rev -1
run get "" --from-key --keys-only -w json --limit 1
run get foo
