#!/usr/bin/env bash
# Drive a server's JSON gateway (HTTP/1.1 on the client port) with curl.
# Usage: gateway.sh ENDPOINT      (e.g. 127.0.0.2:2379)
# Env:   COMPAT_WORK (scratch dir, default: mktemp)
# Every request prints "### METHOD PATH BODY", the response body and
# "status=CODE" (curl's exit code too, for streams).
set -u
. "$(dirname "$0")/quiet.sh"
EP=${1:?usage: gateway.sh ENDPOINT}
U=http://$EP
if [ -n "${COMPAT_WORK:-}" ]; then
    W=$COMPAT_WORK/gateway
    mkdir -p "$W"
else
    W=$(mktemp -d /tmp/rusted-compat.XXXXXX)
fi

b64() { printf '%s' "$1" | base64 -w0; }

# req METHOD PATH [BODY]
req() {
    local m=$1 p=$2
    if [ $# -ge 3 ]; then
        printf '### %s %s %s\n' "$m" "$p" "$3"
        curl -s --http1.1 --max-time 10 -X "$m" "$U$p" -H 'Content-Type: application/json' \
            --data-binary "$3" -w '\nstatus=%{http_code}\n'
    else
        printf '### %s %s\n' "$m" "$p"
        curl -s --http1.1 --max-time 10 -X "$m" "$U$p" -w '\nstatus=%{http_code}\n'
    fi
}
# reql LABEL METHOD PATH BODY : header shows LABEL (for bodies holding IDs)
reql() {
    printf '### %s\n' "$1"
    curl -s --http1.1 --max-time 10 -X "$2" "$U$3" -H 'Content-Type: application/json' \
        --data-binary "$4" -w '\nstatus=%{http_code}\n'
}
post() { req POST "$@"; }
# post_code PATH BODY : a field of the wrong type. etcd's message comes from Go's jsonpb and
# rusted's from its own JSON mapping, so only the gRPC code and the HTTP status are compared
# (documented in README.md as a known difference).
post_code() {
    printf '### POST %s %s (code and status only)\n' "$1" "$2"
    curl -s --http1.1 --max-time 10 -X POST "$U$1" -H 'Content-Type: application/json' \
        --data-binary "$2" -w '\nstatus=%{http_code}\n' | sed -E 's/^\{"error":.*"code":([0-9]+)\}$/code=\1/'
}
# stream_start PATH BODY : start a streamed request in the background
stream_start() {
    : >"$W/s.body"
    : >"$W/s.hdr"
    curl -s -N --http1.1 --max-time 6 -X POST "$U$1" --data-binary "$2" \
        -D "$W/s.hdr" -o "$W/s.body" &
    SP=$!
}
# stream_finish : wait until the body has been quiet for 0.6 s (at most 4 s),
# then stop curl if the server still holds the stream open; print the status,
# the body and who closed the stream
stream_finish() {
    local rc state
    wait_quiet "$SP" "$W/s.body"
    if kill -0 "$SP" 2>/dev/null; then
        { kill -TERM "$SP"; wait "$SP"; } 2>/dev/null
        state="still open (closed by the client)"
    else
        wait "$SP"
        rc=$?
        state="closed by the server (curl exit $rc)"
    fi
    echo "status=$(head -n 1 "$W/s.hdr" | tr -d '\r' | cut -d' ' -f2)"
    # (a final newline is added where the body has none)
    sed -e '$a\' "$W/s.body"
    echo "stream: $state"
}
# stream PATH BODY : a streamed request and its responses
stream() {
    printf '### POST %s %s (stream)\n' "$1" "$2"
    stream_start "$1" "$2"
    stream_finish
}
# wait_body PATTERN : wait (at most 5 s) until the stream body matches
wait_body() {
    local i=0
    while [ $i -lt 100 ]; do
        grep -q -- "$1" "$W/s.body" 2>/dev/null && return 0
        sleep 0.05
        i=$((i + 1))
    done
    echo "(timed out waiting for '$1' in the stream)"
}
# response headers on stdin: names lower-cased (HTTP header names are
# case-insensitive), sorted, the status line first
headers() { sed 's/^\([A-Za-z0-9-]*\):/\L\1:/' | LC_ALL=C sort; }
# revision from a response on stdin
rev_of() { sed -n 's/.*"revision":"\([0-9]*\)".*/\1/p' | head -n 1; }
# decimal lease ID from a grant response on stdin
id_of() { sed -n 's/.*"ID":"\([0-9]*\)".*/\1/p' | head -n 1; }

FOO=$(b64 foo)
FOO1=$(b64 foo1)
FOO2=$(b64 foo2)
FOP=$(b64 fop)
ZOO=$(b64 zoo)
BAR=$(b64 bar)
A=$(b64 a)
B=$(b64 b)

echo "### -- kv: put"
post /v3/kv/put "{\"key\":\"$FOO\",\"value\":\"$BAR\"}"
post /v3/kv/put "{\"key\":\"$FOO1\",\"value\":\"$(b64 bar1)\"}"
post /v3/kv/put "{\"key\":\"$FOO2\",\"value\":\"$(b64 bar2)\"}"
post /v3/kv/put "{\"key\":\"$FOP\",\"value\":\"$(b64 x)\"}"
post /v3/kv/put "{\"key\":\"$ZOO\",\"value\":\"$(b64 z)\"}"
post /v3/kv/put "{\"key\":\"$FOO\",\"value\":\"$(b64 bar-2)\",\"prev_kv\":true}"
post /v3/kv/put "{\"key\":\"$(b64 new)\",\"value\":\"$A\",\"prev_kv\":true}"
post /v3/kv/put "{\"key\":\"$FOO\",\"ignore_value\":true}"
post /v3/kv/put "{\"key\":\"$(b64 nokey)\",\"ignore_value\":true}"
post /v3/kv/put "{\"key\":\"\",\"value\":\"$A\"}"
post /v3/kv/put "{\"key\":\"$(b64 empty-value)\"}"
post /v3/kv/put "{\"key\":\"$(b64 badlease)\",\"value\":\"$A\",\"lease\":\"1234\"}"

echo "### -- kv: range"
post /v3/kv/range "{\"key\":\"$FOO\"}"
post /v3/kv/range "{\"key\":\"$(b64 nokey)\"}"
post /v3/kv/range "{\"key\":\"$FOO\",\"range_end\":\"$(b64 fop)\"}"
post /v3/kv/range "{\"key\":\"$FOO\",\"range_end\":\"$ZOO\",\"keys_only\":true}"
post /v3/kv/range "{\"key\":\"$FOO\",\"range_end\":\"$ZOO\",\"count_only\":true}"
post /v3/kv/range "{\"key\":\"$FOO\",\"range_end\":\"$ZOO\",\"limit\":2}"
post /v3/kv/range "{\"key\":\"$FOO\",\"range_end\":\"$ZOO\",\"limit\":\"2\",\"sort_order\":\"DESCEND\",\"sort_target\":\"MOD\"}"
post /v3/kv/range "{\"key\":\"$FOO\",\"range_end\":\"$ZOO\",\"sort_order\":1,\"sort_target\":4}"
post /v3/kv/range "{\"key\":\"AA==\",\"range_end\":\"AA==\",\"keys_only\":true}"
post /v3/kv/range "{\"key\":\"$FOO\",\"revision\":2}"
post /v3/kv/range "{\"key\":\"$FOO\",\"revision\":\"100000\"}"
post /v3/kv/range "{\"key\":\"$FOO\",\"serializable\":true}"
post /v3/kv/range "{\"key\":\"$FOO\",\"range_end\":\"$ZOO\",\"min_mod_revision\":\"3\",\"max_create_revision\":\"4\"}"
req POST /v3beta/kv/range "{\"key\":\"$FOO\"}"
req POST /v3alpha/kv/range "{\"key\":\"$FOO\"}"

echo "### -- kv: deleterange"
post /v3/kv/put "{\"key\":\"$(b64 d/1)\",\"value\":\"$A\"}"
post /v3/kv/put "{\"key\":\"$(b64 d/2)\",\"value\":\"$B\"}"
post /v3/kv/deleterange "{\"key\":\"$(b64 d/1)\",\"prev_kv\":true}"
post /v3/kv/deleterange "{\"key\":\"$(b64 d/)\",\"range_end\":\"$(b64 d0)\",\"prev_kv\":true}"
post /v3/kv/deleterange "{\"key\":\"$(b64 d/)\",\"range_end\":\"$(b64 d0)\"}"
post /v3/kv/deleterange "{\"key\":\"$(b64 new)\"}"

echo "### -- kv: txn"
post /v3/kv/txn "{\"compare\":[{\"key\":\"$FOO\",\"result\":\"EQUAL\",\"target\":\"VALUE\",\"value\":\"$(b64 bar-2)\"},{\"key\":\"$FOO1\",\"result\":\"GREATER\",\"target\":\"VERSION\",\"version\":\"0\"}],\"success\":[{\"request_put\":{\"key\":\"$FOO\",\"value\":\"$(b64 txn-ok)\",\"prev_kv\":true}},{\"request_range\":{\"key\":\"$FOO1\"}}],\"failure\":[{\"request_put\":{\"key\":\"$FOO\",\"value\":\"$(b64 txn-fail)\"}}]}"
post /v3/kv/txn "{\"compare\":[{\"key\":\"$FOO\",\"target\":\"CREATE\",\"create_revision\":\"1\"}],\"success\":[{\"request_put\":{\"key\":\"$FOO\",\"value\":\"$(b64 never)\"}}],\"failure\":[{\"request_range\":{\"key\":\"$FOO\",\"range_end\":\"$ZOO\",\"keys_only\":true}},{\"request_delete_range\":{\"key\":\"$FOO2\",\"prev_kv\":true}}]}"
post /v3/kv/txn "{\"compare\":[{\"key\":\"$FOO\",\"result\":\"LESS\",\"target\":\"MOD\",\"mod_revision\":\"1000\"},{\"key\":\"$FOO\",\"result\":\"NOT_EQUAL\",\"target\":\"VALUE\",\"value\":\"$BAR\"}],\"success\":[{\"request_txn\":{\"compare\":[],\"success\":[{\"request_put\":{\"key\":\"$(b64 nested)\",\"value\":\"$A\"}}]}}]}"
post /v3/kv/txn '{}'
post /v3/kv/txn "{\"success\":[{\"request_put\":{\"key\":\"$A\",\"value\":\"$A\"}},{\"request_put\":{\"key\":\"$A\",\"value\":\"$B\"}}]}"
post /v3/kv/txn "{\"compare\":[{\"key\":\"$FOO\",\"target\":\"LEASE\",\"lease\":\"0\"}],\"success\":[{\"request_range\":{\"key\":\"$FOO\",\"count_only\":true}}]}"

echo "### -- kv: compaction"
post /v3/kv/put "{\"key\":\"$(b64 c)\",\"value\":\"$(b64 1)\"}"
R=$(curl -s -X POST "$U/v3/kv/range" --data-binary "{\"key\":\"$(b64 c)\"}" | rev_of)
post /v3/kv/put "{\"key\":\"$(b64 c)\",\"value\":\"$(b64 2)\"}"
post /v3/kv/put "{\"key\":\"$(b64 c)\",\"value\":\"$(b64 3)\"}"
reql "POST /v3/kv/compaction {revision: REV+1}" POST /v3/kv/compaction "{\"revision\":\"$((R + 1))\"}"
reql "POST /v3/kv/range {key: c, revision: REV}" POST /v3/kv/range "{\"key\":\"$(b64 c)\",\"revision\":\"$R\"}"
reql "POST /v3/kv/range {key: c, revision: REV+1}" POST /v3/kv/range "{\"key\":\"$(b64 c)\",\"revision\":\"$((R + 1))\"}"
reql "POST /v3/kv/compaction {revision: REV+1} (again)" POST /v3/kv/compaction "{\"revision\":\"$((R + 1))\"}"
post /v3/kv/compaction '{"revision":"100000"}'
reql "POST /v3/kv/compaction {revision: REV+2, physical: true}" POST /v3/kv/compaction "{\"revision\":\"$((R + 2))\",\"physical\":true}"

echo "### -- watch (streams)"
stream /v3/watch "{\"create_request\":{\"key\":\"$FOO\",\"range_end\":\"$ZOO\",\"start_revision\":\"$((R + 2))\"}}"
stream /v3/watch "{\"create_request\":{\"key\":\"$FOO\",\"start_revision\":1}}"
stream /v3/watch "{\"create_request\":{\"key\":\"$(b64 c)\",\"start_revision\":\"$((R + 2))\",\"prev_kv\":true}}"
stream /v3/watch "{\"create_request\":{\"key\":\"AA==\",\"range_end\":\"AA==\",\"start_revision\":\"$((R + 2))\",\"filters\":[\"NODELETE\"]}}"
stream /v3/watch '{"create_request":{"key":"bm9rZXk="}}'
stream /v3/watch '{bad json'
stream /v3/watch "{\"create_request\":{\"key\":\"$FOO\",\"start_revision\":\"$((R + 2))\"}}{\"create_request\":{\"key\":\"$(b64 c)\",\"start_revision\":\"$((R + 2))\"}}"
stream /v3/watch "{\"create_request\":{\"key\":\"$FOO\"}}{\"progress_request\":{}}"
stream /v3/watch "{\"create_request\":{\"key\":\"$FOO\",\"watch_id\":\"7\"}}{\"cancel_request\":{\"watch_id\":\"7\"}}"
stream /v3/watch '{"cancel_request":{"watch_id":"42"}}'
# live: the put happens once the watch has been created
stream_start /v3/watch "{\"create_request\":{\"key\":\"$(b64 live)\",\"prev_kv\":true}}"
wait_body '"created":true'
post /v3/kv/put "{\"key\":\"$(b64 live)\",\"value\":\"$A\"}"
post /v3/kv/put "{\"key\":\"$(b64 live)\",\"value\":\"$B\"}"
post /v3/kv/deleterange "{\"key\":\"$(b64 live)\"}"
echo "### POST /v3/watch {create_request: live, prev_kv} (created before the puts above)"
stream_finish

echo "### -- lease"
post /v3/lease/grant '{"TTL":60}' | tee "$W/grant"
ID=$(id_of <"$W/grant")
post /v3/lease/grant '{"TTL":"30"}'
post /v3/lease/grant '{"TTL":"9999999999"}'
post /v3/lease/grant '{"ID":"12345","TTL":"30"}'
post /v3/lease/grant '{"ID":"12345","TTL":"30"}'
post /v3/lease/revoke '{"ID":"12345"}'
reql "POST /v3/kv/put {key: lk, lease: \$ID}" POST /v3/kv/put "{\"key\":\"$(b64 lk)\",\"value\":\"$A\",\"lease\":\"$ID\"}"
reql "POST /v3/lease/timetolive {ID: \$ID, keys: true}" POST /v3/lease/timetolive "{\"ID\":\"$ID\",\"keys\":true}"
reql "POST /v3/lease/timetolive {ID: \$ID}" POST /v3/lease/timetolive "{\"ID\":$ID}"
reql "POST /v3/kv/lease/timetolive {ID: \$ID} (alias path)" POST /v3/kv/lease/timetolive "{\"ID\":\"$ID\"}"
post /v3/lease/leases '{}'
post /v3/kv/lease/leases '{}'
printf '### POST /v3/lease/keepalive {ID: $ID} (stream)\n'
stream_start /v3/lease/keepalive "{\"ID\":\"$ID\"}"
stream_finish
stream /v3/lease/keepalive '{"ID":"1234"}'
reql "POST /v3/lease/revoke {ID: \$ID}" POST /v3/lease/revoke "{\"ID\":\"$ID\"}"
post /v3/kv/range "{\"key\":\"$(b64 lk)\"}"
reql "POST /v3/lease/timetolive {ID: \$ID} (revoked)" POST /v3/lease/timetolive "{\"ID\":\"$ID\"}"
reql "POST /v3/lease/revoke {ID: \$ID} (again)" POST /v3/lease/revoke "{\"ID\":\"$ID\"}"
reql "POST /v3/kv/lease/revoke {ID: \$ID} (alias path)" POST /v3/kv/lease/revoke "{\"ID\":\"$ID\"}"
post /v3/lease/timetolive '{"ID":"1234"}'
post /v3/lease/grant '{"TTL":1}'
# the TTL-1 lease expires soon: revoke every lease so that the list does not
# depend on timing
for l in $(curl -s -X POST "$U/v3/lease/leases" --data-binary '{}' | grep -o '"ID":"[0-9]*"' | grep -o '[0-9][0-9]*'); do
    curl -s -X POST "$U/v3/lease/revoke" --data-binary "{\"ID\":\"$l\"}" >/dev/null
done
post /v3/lease/leases '{}'

echo "### -- maintenance / cluster"
post /v3/maintenance/status '{}'
post /v3/maintenance/alarm '{}'
post /v3/maintenance/alarm '{"action":"GET"}'
post /v3/maintenance/defragment '{}'
post /v3/cluster/member/list '{}'
req GET /health
req GET /version
printf '### GET /metrics (selected names)\n'
curl -s --http1.1 --max-time 10 "$U/metrics" -o "$W/metrics" -w 'status=%{http_code}\n'
for n in etcd_server_has_leader etcd_server_is_leader etcd_mvcc_db_total_size_in_bytes etcd_debugging_mvcc_keys_total grpc_server_handled_total process_resident_memory_bytes; do
    if grep -q "^$n[ {]" "$W/metrics"; then echo "$n: present"; else echo "$n: MISSING"; fi
done
grep -E '^etcd_server_has_leader |^etcd_server_is_leader ' "$W/metrics"
printf '### GET /metrics: content type\n'
curl -s --http1.1 -o /dev/null -w '%{content_type}\n' "$U/metrics"

echo "### -- headers"
printf '### POST /v3/kv/range (response headers)\n'
curl -s --http1.1 -D - -o /dev/null -X POST "$U/v3/kv/range" --data-binary "{\"key\":\"$FOO\"}" | tr -d '\r' | grep -v '^$' | headers
printf '### GET /health (response headers)\n'
curl -s --http1.1 -D - -o /dev/null "$U/health" | tr -d '\r' | grep -v '^$' | headers
printf '### OPTIONS /v3/kv/range (response headers)\n'
curl -s --http1.1 -D - -o /dev/null -X OPTIONS "$U/v3/kv/range" | tr -d '\r' | grep -v '^$' | headers

echo "### -- malformed input"
post /v3/kv/range '{bad'
post /v3/kv/range ''
post /v3/kv/range '[]'
post_code /v3/kv/range '{"key":"!!!"}'
post /v3/kv/range '{"key":"Zm9v","unknown_field":1}'
post_code /v3/kv/range '{"key":"Zm9v","limit":"abc"}'
post_code /v3/kv/range '{"key":"Zm9v","sort_order":"SIDEWAYS"}'
post_code /v3/kv/put '{"key":"Zm9v","value":123}'
post /v3/kv/range 'null'
post_code /v3/lease/grant '{"TTL":"x"}'
post /v3/kv/nope '{}'
post /v3/nope '{}'
post /nothing '{}'
req GET /v3/kv/range
req PUT /v3/kv/range '{}'
req DELETE /v3/kv/put
req POST /health
req GET /v3/kv/range/
head -c 1600000 /dev/zero | tr '\0' a | base64 -w0 >"$W/big.b64"
{
    printf '{"key":"%s","value":"' "$(b64 big)"
    cat "$W/big.b64"
    printf '"}'
} >"$W/big.json"
printf '### POST /v3/kv/put (value of 1600000 bytes)\n'
curl -s --http1.1 --max-time 10 -X POST "$U/v3/kv/put" --data-binary "@$W/big.json" -w '\nstatus=%{http_code}\n'
# Past the gRPC message limit (--max-request-bytes + 512 KiB): grpc-go's words, HTTP 429.
for n in 2621440 5242880; do
    {
        printf '{"key":"%s","value":"' "$(b64 big)"
        head -c "$n" /dev/zero | tr '\0' a | base64 -w0
        printf '"}'
    } >"$W/huge.json"
    printf '### POST /v3/kv/put (value of %s bytes)\n' "$n"
    curl -s --http1.1 --max-time 10 -X POST "$U/v3/kv/put" --data-binary "@$W/huge.json" -w '\nstatus=%{http_code}\n'
done
{
    printf '{"success":['
    for i in $(seq 1 129); do
        [ "$i" -gt 1 ] && printf ','
        printf '{"request_put":{"key":"%s","value":"%s"}}' "$(b64 "many/$i")" "$A"
    done
    printf ']}'
} >"$W/txn129.json"
printf '### POST /v3/kv/txn (129 puts)\n'
curl -s --http1.1 --max-time 10 -X POST "$U/v3/kv/txn" --data-binary "@$W/txn129.json" -w '\nstatus=%{http_code}\n'
post /v3/kv/range "{\"key\":\"$FOO\"}"
