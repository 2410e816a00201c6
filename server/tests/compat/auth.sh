#!/usr/bin/env bash
# Authentication and authorization against etcd and rusted, through etcdctl and the JSON
# gateway, outputs normalized and diffed: users, roles and permissions (add, get, list, grant,
# revoke, delete, password change), enabling and disabling auth and etcd's refusals, what a
# user may read, write, watch and run in a txn with a prefix, a single key and no permission,
# wrong passwords, no credentials, tokens on the gateway, snapshots for root only.
#
# Env: see harness.sh.
NAME=auth
ADDRS="127.0.0.25 127.0.0.26"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
"$NODE" -e "require('etcd3')" 2>/dev/null ||
    die "npm's etcd3 is not reachable from $NODE (.ci/run installs it and sets NODE_PATH)"

scenarios() {
    local bin=$1 a=$2 tag=$3
    start "$bin" "$a" "$tag"
    local E=(--endpoints "$a:2379")
    local root=(--endpoints "$a:2379" --user root:rootpw)
    local alice=(--endpoints "$a:2379" --user alice:alicepw)
    echo "## before auth is enabled"
    step "enable without root" ctl "${E[@]}" auth enable
    step "add alice" ctl "${E[@]}" user add alice:alicepw
    step "add alice again" ctl "${E[@]}" user add alice:x
    step "add bob" ctl "${E[@]}" user add bob:bobpw
    step "add role r" ctl "${E[@]}" role add r
    step "add role r again" ctl "${E[@]}" role add r
    step "add role ro" ctl "${E[@]}" role add ro
    step "grant readwrite foo prefix" ctl "${E[@]}" role grant-permission r readwrite foo --prefix
    step "grant write wo" ctl "${E[@]}" role grant-permission r write wo
    step "grant read range [ro, rp)" ctl "${E[@]}" role grant-permission ro read ro rp
    step "grant read from key z" ctl "${E[@]}" role grant-permission ro read z --from-key
    step "grant on a missing role" ctl "${E[@]}" role grant-permission nosuch read k
    step "grant r to alice" ctl "${E[@]}" user grant-role alice r
    step "grant ro to alice" ctl "${E[@]}" user grant-role alice ro
    step "grant a missing role" ctl "${E[@]}" user grant-role alice nosuch
    step "grant to a missing user" ctl "${E[@]}" user grant-role nobody r
    step "role get r" ctl "${E[@]}" role get r
    step "role get ro" ctl "${E[@]}" role get ro
    step "user get alice" ctl "${E[@]}" user get alice
    step "user get alice --detail" ctl "${E[@]}" user get alice --detail
    step "user get alice --detail -w json" ctl "${E[@]}" user get alice --detail -w json
    step "user list" ctl "${E[@]}" user list
    step "role list" ctl "${E[@]}" role list
    step "put without auth" ctl "${E[@]}" put bar b0
    step "add root" ctl "${E[@]}" user add root:rootpw
    # (etcdctl answers "root role missing" by adding the role, granting it to root, retrying)
    step "enable without the root role" ctl "${E[@]}" auth enable
    step "role list" ctl "${root[@]}" role list
    step "enable again" ctl "${root[@]}" auth enable
    echo "## enabled"
    step "root gets bar" ctl "${root[@]}" get bar
    step "no credentials" ctl "${E[@]}" get bar
    step "wrong password" ctl "${E[@]}" --user alice:nope get foo1
    step "unknown user" ctl "${E[@]}" --user mallory:x get foo1
    step "alice puts foo1" ctl "${alice[@]}" put foo1 v1
    step "alice gets foo1" ctl "${alice[@]}" get foo1
    step "alice gets the foo prefix" ctl "${alice[@]}" get foo --prefix
    step "alice gets bar" ctl "${alice[@]}" get bar
    step "alice puts bar" ctl "${alice[@]}" put bar x
    step "alice reads everything" ctl "${alice[@]}" get "" --from-key
    step "alice puts wo (write only)" ctl "${alice[@]}" put wo x
    step "alice gets wo" ctl "${alice[@]}" get wo
    step "alice puts wo with prev-kv" ctl "${alice[@]}" put wo y --prev-kv
    step "alice reads [ro, rp)" ctl "${alice[@]}" get ro rp
    step "alice reads [ro, rq)" ctl "${alice[@]}" get ro rq
    step "alice reads z from key" ctl "${alice[@]}" get z --from-key
    step "alice reads zz" ctl "${alice[@]}" get zz
    step "alice deletes foo1 with prev-kv" ctl "${alice[@]}" del foo1 --prev-kv
    step "alice deletes bar" ctl "${alice[@]}" del bar
    step "alice txn within foo" sh -c "printf 'value(\"foo2\") = \"x\"\n\nput foo2 a\n\nput foo3 b\n\n' | ETCDCTL_API=3 '$CLIENT' --endpoints $a:2379 --user alice:alicepw txn"
    step "alice txn touching bar in the failure branch" sh -c "printf 'value(\"foo2\") = \"x\"\n\nput foo2 a\n\nput bar b\n\n' | ETCDCTL_API=3 '$CLIENT' --endpoints $a:2379 --user alice:alicepw txn"
    step "alice txn comparing bar" sh -c "printf 'value(\"bar\") = \"x\"\n\nput foo2 a\n\n\n' | ETCDCTL_API=3 '$CLIENT' --endpoints $a:2379 --user alice:alicepw txn"
    step "alice watches bar" timeout 3 env ETCDCTL_API=3 "$CLIENT" --endpoints "$a:2379" --user alice:alicepw watch bar
    # (python etcd3 sends credentials only over TLS: its own stubs, with the token as metadata)
    step "python etcd3 stubs as alice" "$PYTHON" -c "
import etcd3
from etcd3 import etcdrpc
c = etcd3.client(host='$a', port=2379)
tok = etcdrpc.AuthStub(c.channel).Authenticate(etcdrpc.AuthenticateRequest(name='alice', password='alicepw')).token
md = [('token', tok)]
c.kvstub.Put(etcdrpc.PutRequest(key=b'foo5', value=b'p'), metadata=md)
print(c.kvstub.Range(etcdrpc.RangeRequest(key=b'foo5'), metadata=md).kvs[0].value)
for f in (lambda: c.kvstub.Range(etcdrpc.RangeRequest(key=b'bar'), metadata=md),
          lambda: c.kvstub.Range(etcdrpc.RangeRequest(key=b'bar'), metadata=[('token', 'bad.1')]),
          lambda: c.kvstub.Range(etcdrpc.RangeRequest(key=b'bar'))):
    try:
        f()
        print('allowed')
    except Exception as e:
        print(e.code().name, e.details())
"
    step "python etcd3, wrong password" "$PYTHON" -c "
import etcd3
try:
    etcd3.client(host='$a', port=2379, user='alice', password='nope').get('foo5')
    print('allowed')
except Exception as e:
    print(type(e).__name__, e.code().name if hasattr(e, 'code') else '', e.details() if hasattr(e, 'details') else '')
"
    step "npm etcd3 as alice" timeout 60 "$NODE" "$HERE/npm_auth.js" "$a"
    step "alice: role get r" ctl "${alice[@]}" role get r
    step "alice: role get root" ctl "${alice[@]}" role get root
    step "alice: user get alice" ctl "${alice[@]}" user get alice
    step "alice: user get root" ctl "${alice[@]}" user get root
    step "alice: user list" ctl "${alice[@]}" user list
    step "alice: user add" ctl "${alice[@]}" user add eve:x
    step "alice: auth disable" ctl "${alice[@]}" auth disable
    step "alice: snapshot" sh -c "ETCDCTL_API=3 '$CLIENT' --endpoints $a:2379 --user alice:alicepw snapshot save $WORK/a.db 2>&1 | grep -v '\"level\"'"
    step "alice: defrag" ctl "${alice[@]}" defrag
    step "root: snapshot" sh -c "ETCDCTL_API=3 '$CLIENT' --endpoints $a:2379 --user root:rootpw snapshot save $WORK/r.db 2>/dev/null"
    step "root: delete root" ctl "${root[@]}" user delete root
    step "root: revoke root from root" ctl "${root[@]}" user revoke-role root root
    step "root: delete role root" ctl "${root[@]}" role delete root
    step "root: revoke a permission not granted" ctl "${root[@]}" role revoke-permission r nosuch
    step "root: revoke role not granted" ctl "${root[@]}" user revoke-role bob r
    step "root: revoke wo" ctl "${root[@]}" role revoke-permission r wo
    step "alice puts wo now" ctl "${alice[@]}" put wo z
    step "root: revoke r from alice" ctl "${root[@]}" user revoke-role alice r
    step "alice puts foo2 now" ctl "${alice[@]}" put foo2 x
    step "root: change alice's password" sh -c "echo newpw | ETCDCTL_API=3 '$CLIENT' --endpoints $a:2379 --user root:rootpw user passwd alice --interactive=false"
    step "alice, old password" ctl "${alice[@]}" get ro
    step "alice, new password" ctl "${E[@]}" --user alice:newpw get ro
    step "root: delete role ro" ctl "${root[@]}" role delete ro
    step "user get alice" ctl "${root[@]}" user get alice
    local bobtoken
    bobtoken=$(curl -s "http://$a:2379/v3/auth/authenticate" -d '{"name":"bob","password":"bobpw"}' | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin).get("token",""))')
    step "bob's token works (bob may read nothing)" curl -s "http://$a:2379/v3/kv/range" -H "Authorization: $bobtoken" -d '{"key":"Zm9vMg=="}'
    step "root: delete bob" ctl "${root[@]}" user delete bob
    step "bob's token after the delete" curl -s "http://$a:2379/v3/kv/range" -H "Authorization: $bobtoken" -d '{"key":"Zm9vMg=="}'

    step "root: delete bob again" ctl "${root[@]}" user delete bob
    step "root: role get missing" ctl "${root[@]}" role get nosuch
    step "root: user get missing" ctl "${root[@]}" user get nosuch
    echo "## the gateway"
    local token
    token=$(curl -s "http://$a:2379/v3/auth/authenticate" -d '{"name":"root","password":"rootpw"}' | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin).get("token",""))')
    step "authenticate gives a token" sh -c "[ -n '$token' ] && echo yes"
    step "range with the token" curl -s "http://$a:2379/v3/kv/range" -H "Authorization: $token" -d '{"key":"Zm9vMg=="}'
    step "range without" curl -s "http://$a:2379/v3/kv/range" -d '{"key":"Zm9vMg=="}'
    step "range with a bad token" curl -s "http://$a:2379/v3/kv/range" -H "Authorization: nope.1" -d '{"key":"Zm9vMg=="}'
    step "wrong password" curl -s "http://$a:2379/v3/auth/authenticate" -d '{"name":"root","password":"x"}'
    step "root: disable" ctl "${root[@]}" auth disable
    step "get without credentials" ctl "${E[@]}" get foo2
    step "authenticate while disabled" curl -s "http://$a:2379/v3/auth/authenticate" -d '{"name":"root","password":"rootpw"}'
    stop_server
    echo "## etcd restored from the snapshot root saved (users, roles and the enabled flag kept)"
    rm -rf "$WORK/restored"
    step "restore" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' snapshot restore $WORK/r.db --data-dir $WORK/restored --name default --initial-cluster default=http://$a:2380 --initial-advertise-peer-urls http://$a:2380 >/dev/null 2>&1; echo \$?"
    "$ETCD_BIN" --name default --data-dir "$WORK/restored" \
        --listen-client-urls "http://$a:2379" --advertise-client-urls "http://$a:2379" \
        --listen-peer-urls "http://$a:2380" --initial-advertise-peer-urls "http://$a:2380" \
        --initial-cluster "default=http://$a:2380" >"$WORK/server-$tag-restored.log" 2>&1 &
    SERVER_PID=$!
    local t0=$SECONDS
    until ctl "${root[@]}" endpoint health >/dev/null 2>&1; do
        [ $((SECONDS - t0)) -lt 20 ] || break
        sleep 0.2
    done
    step "no credentials" ctl "${E[@]}" get foo1
    step "user list" ctl "${root[@]}" user list
    step "role get r" ctl "${root[@]}" role get r
    step "user get alice" ctl "${root[@]}" user get alice
    step "alice reads [ro, rp)" ctl "${alice[@]}" get ro rp
    stop_server
}

run_targets
