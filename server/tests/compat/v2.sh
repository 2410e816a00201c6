#!/usr/bin/env bash
# etcd's v2 API (`--enable-v2`) against etcd 3.4 and rusted, outputs normalized and diffed:
# the ETCDCTL_API=2 commands etcd's documents show (keys, dirs, TTLs, compare-and-swap,
# in-order keys, watches, members, cluster-health), the raw JSON and headers of /v2/keys,
# /v2/members, /v2/machines and /v2/stats, and the 404s without the flag.
#
# Env: see harness.sh.
NAME=v2
ADDRS="127.0.0.201 127.0.0.202"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

# v2 CMD...: etcdctl's v2 commands against the server under test.
v2() { ETCDCTL_API=2 timeout 20 "$ETCDCTL_BIN" --endpoints "http://$A:2379" "$@"; }
# raw curl ARGS...: the status line, the v2 headers (sorted) and the body of an answer.
raw() {
    curl -s -i --max-time 10 "$@" | tr -d '\r' | awk '
        /^HTTP\// && !head { print $1 " " $2; head = 1; next }
        body { print; next }
        /^$/ { body = 1; close("sort"); next }
        tolower($0) ~ /^(x-etcd-index|content-type|allow|location|x-content-type-options):/ { print tolower($0) | "sort" }
        tolower($0) ~ /^(x-etcd-cluster-id|x-raft-index|x-raft-term):/ { sub(/:.*/, ": SET"); print tolower($0) | "sort" }'
}
K() { echo "http://$A:2379/v2/keys$1"; }

scenarios() {
    local bin=$1 tag=$3
    A=$2
    echo "## without --enable-v2"
    start "$bin" "$A" "$tag-off"
    step "keys" raw "$(K /foo)"
    step "members" raw "http://$A:2379/v2/members"
    step "etcdctl v2 set" v2 set /foo bar
    stop_server

    echo "## --enable-v2: etcdctl"
    start "$bin" "$A" "$tag" --enable-v2
    step "set" v2 set /foo bar
    step "get" v2 get /foo
    step "get missing" v2 get /nope
    step "get below a file" v2 get /foo/bar
    step "mk existing" v2 mk /foo again
    step "mk" v2 mk /new one
    step "update" v2 update /new two
    step "update missing" v2 update /missing x
    step "set --swap-with-value wrong" v2 set /new three --swap-with-value nope
    step "set --swap-with-value" v2 set /new three --swap-with-value two
    step "set --swap-with-index wrong" v2 set /new four --swap-with-index 1
    step "mkdir" v2 mkdir /dir
    step "mkdir existing" v2 mkdir /dir
    step "set in dir" v2 set /dir/a 1
    step "set deeper" v2 set /dir/sub/b 2
    step "set hidden" v2 set /dir/_hidden h
    step "get a dir" v2 get /dir
    step "ls (unsorted: Go's map order)" sh -c "ETCDCTL_API=2 '$ETCDCTL_BIN' --endpoints http://$A:2379 ls | sort"
    step "ls --sort -r -p" v2 ls --sort -r -p /
    step "ls dir" v2 ls --sort /dir
    step "get hidden" v2 get /dir/_hidden
    step "setdir on a dir" v2 setdir /dir
    step "rm a dir" v2 rm /dir
    step "rmdir non-empty" v2 rmdir /dir
    step "rm -r" v2 rm -r /dir
    step "rm file" v2 rm /foo
    step "rm --with-value wrong" v2 rm /new --with-value nope
    step "rm --with-value" v2 rm /new --with-value three
    step "extended output" v2 -o extended set /ext val
    step "json output" v2 -o json get /ext
    step "json error" v2 -o json get /nope
    step "mk --in-order" v2 mk --in-order /queue job1
    step "ls queue" v2 ls /queue
    step "set with ttl" v2 set /ttl v --ttl 1
    sleep 2.5
    step "ttl key expired" v2 get /ttl
    step "set ttl then update without" v2 set /keep v --ttl 1
    step "update clears the ttl" v2 update /keep w
    sleep 2.5
    step "still there" v2 get /keep
    step "watch (one event)" sh -c "(sleep 1; ETCDCTL_API=2 '$ETCDCTL_BIN' --endpoints http://$A:2379 set /w 1 >/dev/null) & ETCDCTL_API=2 timeout 10 '$ETCDCTL_BIN' --endpoints http://$A:2379 watch /w; wait"
    step "watch -r (a file below, then the dir's own event is skipped)" sh -c "(sleep 1; ETCDCTL_API=2 '$ETCDCTL_BIN' --endpoints http://$A:2379 mkdir /wd/sub >/dev/null; ETCDCTL_API=2 '$ETCDCTL_BIN' --endpoints http://$A:2379 set /wd/x 1 >/dev/null) & ETCDCTL_API=2 timeout 10 '$ETCDCTL_BIN' --endpoints http://$A:2379 watch -r /wd; wait"
    step "watch --after-index (from the history)" sh -c "ETCDCTL_API=2 timeout 10 '$ETCDCTL_BIN' --endpoints http://$A:2379 watch --after-index 20 /w"
    step "member list" v2 member list
    step "cluster-health" v2 cluster-health

    echo "## --enable-v2: raw HTTP"
    step "PUT" raw -X PUT "$(K /r)" -d value=one
    step "PUT again (prevNode)" raw -X PUT "$(K /r)" -d value='<two&>'
    step "GET" raw "$(K /r)"
    step "GET root" raw "$(K /)?sorted=true"
    step "GET missing deep" raw "$(K /a/b/c)"
    step "PUT prevExist=false" raw -X PUT "$(K /r)?prevExist=false" -d value=x
    step "PUT prevIndex wrong" raw -X PUT "$(K /r)?prevIndex=1&prevValue=zzz" -d value=x
    step "PUT bad ttl" raw -X PUT "$(K /r)" -d ttl=abc
    step "PUT empty prevValue" raw -X PUT "$(K /r)" -d prevValue=
    step "PUT refresh without ttl" raw -X PUT "$(K /r)" -d refresh=true
    step "PUT refresh with value" raw -X PUT "$(K /r)" -d refresh=true -d ttl=5 -d value=v
    step "GET bad bool" raw "$(K /r)?recursive"
    step "PUT wait" raw -X PUT "$(K /r)?wait=true" -d value=x
    step "bad escape" raw "$(K /r)?a=%zz"
    step "noValueOnSuccess" raw -X PUT "$(K /r)?noValueOnSuccess=true" -d value=nv
    step "POST in order" raw -X POST "$(K /q)" -d value=a
    step "PUT dir" raw -X PUT "$(K /d)" -d dir=true
    step "PUT value on a dir" raw -X PUT "$(K /d)" -d value=x
    step "PUT under a file" raw -X PUT "$(K /r/x)" -d value=x
    step "DELETE dir without dir" raw -X DELETE "$(K /d)"
    step "DELETE dir" raw -X DELETE "$(K /d)?dir=true"
    step "DELETE root" raw -X DELETE "$(K /)?dir=true"
    step "DELETE compare" raw -X DELETE "$(K /r)?prevValue=nv"
    step "PATCH" raw -X PATCH "$(K /r)"
    step "GET an unclean path" raw --path-as-is "$(K //r/../r)?recursive=true"
    step "PUT an unclean path" raw --path-as-is -X PUT "$(K /./u)" -d value=x
    step "an unclean gateway path" raw --path-as-is -X POST "http://$A:2379/v3//kv/range" -d '{}'
    step "an unclean health path" raw --path-as-is "http://$A:2379/metrics/../health"
    step "wait for an old index" sh -c "curl -s -o /dev/null http://$A:2379/v2/keys/x -XPUT -d value=1; curl -s 'http://$A:2379/v2/keys/x?wait=true&waitIndex=1'"
    step "waitIndex in history" raw "$(K /r)?wait=true&waitIndex=1&recursive=false"
    step "members" raw "http://$A:2379/v2/members"
    step "members leader" raw "http://$A:2379/v2/members/leader"
    step "members unknown path" raw "http://$A:2379/v2/members/x/y"
    step "members bad content type" raw -X POST "http://$A:2379/v2/members" -d '{"peerURLs":["http://127.0.0.9:1"]}'
    step "members bad url" raw -X POST -H 'Content-Type: application/json' "http://$A:2379/v2/members" -d '{"peerURLs":["ftp://x:1"]}'
    step "members existing url" raw -X POST -H 'Content-Type: application/json' "http://$A:2379/v2/members" -d "{\"peerURLs\":[\"http://$A:2380\"]}"
    step "members delete unknown" raw -X DELETE "http://$A:2379/v2/members/abc"
    step "machines" raw "http://$A:2379/v2/machines"
    step "stats store keys" sh -c "curl -s http://$A:2379/v2/stats/store | tr ',' '\n' | cut -d: -f1"
    step "stats self state" sh -c "curl -s http://$A:2379/v2/stats/self | tr ',' '\n' | grep -o '\"state\":\"[A-Za-z]*\"'"
    step "stats leader followers" sh -c "curl -s http://$A:2379/v2/stats/leader | grep -o '\"followers\":{}'"
    step "a key with a long ttl" raw -X PUT "$(K /long)" -d value=l -d ttl=600
    stop_server

    echo "## --enable-v2: after a restart"
    "$bin" --name default --data-dir "$WORK/data-$tag" \
        --listen-client-urls "http://$A:2379" --advertise-client-urls "http://$A:2379" \
        --listen-peer-urls "http://$A:2380" --initial-advertise-peer-urls "http://$A:2380" \
        --initial-cluster "default=http://$A:2380" --enable-v2 >"$WORK/server-$tag-again.log" 2>&1 &
    SERVER_PID=$!
    wait_healthy "$A" "$tag-again"
    step "the keys" raw "$(K /)?sorted=true&recursive=true"
    step "a write" raw -X PUT "$(K /after)" -d value=restart
    stop_server
}

# Times and remaining TTLs differ from run to run.
post_normalize() {
    sed -E -e "s/${1//./\\.}/ADDR/g" -e 's/"expiration":"[^"]*"/"expiration":"TS"/g' -e 's/"ttl":-?[0-9]+/"ttl":TTL/g' \
        -e 's/^TTL: -?[0-9]+/TTL: TTL/'
}

run_targets
