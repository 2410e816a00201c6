#!/usr/bin/env bash
# DNS SRV discovery (--discovery-srv) through a local dnsmasq, etcd 3.4 against rusted: three
# members with https peers bootstrap from `_etcd-server-ssl._tcp` records (each member runs in
# a private mount namespace whose /etc/resolv.conf names the dnsmasq), and etcdctl (or, as the
# rustedctl target, rustedctl) finds them by `--discovery-srv`. Then rusted alone bootstraps
# from http-only `_etcd-server._tcp` records, which etcd 3.4 cannot use (etcd issue 11321),
# and a member the records do not name is refused. Needs root (unshare -m)
# and dnsmasq (Debian's dnsmasq-base).
#
# Env: see harness.sh.
NAME=srv
ADDRS="127.0.0.231 127.0.0.241"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
for c in dnsmasq openssl unshare; do
    command -v "$c" >/dev/null 2>&1 || die "$c not found (.ci/run installs dnsmasq-base and openssl)"
done

# dns IP CONF NAME: a dnsmasq on IP:53 answering from CONF only, and RESOLV ($WORK/resolv-IP)
# naming it; returns once NAME resolves through it (20 s at most).
dns() {
    dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
        --listen-address="$1" --port=53 --conf-file="$2" --pid-file="$WORK/dns-$1.pid" \
        >"$WORK/dns-$1.log" 2>&1 &
    PIDS+=($!)
    echo "nameserver $1" >"$WORK/resolv-$1"
    local t0=$SECONDS
    until ns "$WORK/resolv-$1" getent hosts "$3" >/dev/null 2>&1; do
        [ $((SECONDS - t0)) -lt 20 ] || die "dnsmasq on $1 does not answer"
        sleep 0.2
    done
}
# ns RESOLV CMD...: CMD with RESOLV as its /etc/resolv.conf.
ns() {
    local resolv=$1
    shift
    unshare -m sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$resolv" "$@"
}
# ns_exec RESOLV CMD...: ns, replacing the shell it runs in (so a background one's pid is the
# server's own).
ns_exec() {
    local resolv=$1
    shift
    exec unshare -m sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$resolv" "$@"
}
# srv_member BIN TAG NAME IP DOMAIN SCHEME [FLAGS...]
srv_member() {
    local bin=$1 tag=$2 name=$3 ip=$4 domain=$5 scheme=$6
    shift 6
    ns_exec "$WORK/resolv-$tag" "$bin" --name "$name" --data-dir "$WORK/$tag/$name" \
        --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$name.$domain:2379" \
        --listen-peer-urls "$scheme://$ip:2380" --initial-advertise-peer-urls "$scheme://$name.$domain:2380" \
        --discovery-srv "$domain" --initial-cluster-token "$NAME-$tag" "$@" >>"$WORK/$tag-$name.log" 2>&1 &
    MEMBER_PID[$name]=$!
    PIDS+=($!)
}
zone() { # zone DOMAIN IP KIND: A records m1..m3 at IP+1..3, SRV records of KIND (ssl or plain)
    local d=$1 ip=$2 kind=$3 i sfx
    [ "$kind" = ssl ] && sfx=-ssl || sfx=
    for i in 1 2 3; do
        echo "address=/m$i.$d/$(next_ip "$ip" "$i")"
        echo "srv-host=_etcd-server$sfx._tcp.$d,m$i.$d,2380"
        echo "srv-host=_etcd-client._tcp.$d,m$i.$d,2379"
    done
}

scenarios() {
    local bin=$1 a=$2 tag=$3 d="$3.srv.test" i
    local certs="$WORK/certs-$tag"
    bash "$HERE/certs.sh" "$certs" "$(next_ip "$a" 1)" "$(next_ip "$a" 2)" "$(next_ip "$a" 3)" \
        "DNS:m1.$d" "DNS:m2.$d" "DNS:m3.$d" "DNS:$d" || die "cannot make test certificates"
    zone "$d" "$a" ssl >"$WORK/zone-$tag.conf"
    dns "$a" "$WORK/zone-$tag.conf" "m1.$d"
    cp "$WORK/resolv-$a" "$WORK/resolv-$tag"
    echo "## https peers from _etcd-server-ssl records"
    for i in 1 2 3; do
        srv_member "$bin" "$tag" "m$i" "$(next_ip "$a" "$i")" "$d" https \
            --peer-cert-file "$certs/server.pem" --peer-key-file "$certs/server-key.pem" \
            --peer-trusted-ca-file "$certs/ca.pem"
    done
    step "cluster up" wait_endpoints "$(next_ip "$a" 1):2379,$(next_ip "$a" 2):2379,$(next_ip "$a" 3):2379"
    step "members" sh -c "ETCDCTL_API=3 '$ETCDCTL_BIN' --endpoints $(next_ip "$a" 1):2379 member list | cut -d, -f3- | sort"
    step "put" ctl --endpoints "$(next_ip "$a" 1):2379" put k v
    step "client by --discovery-srv" ns "$WORK/resolv-$tag" env ETCDCTL_API=3 timeout 20 "$CLIENT" --dial-timeout=2s --command-timeout=3s --discovery-srv "$d" get k
    step "unknown domain" ns "$WORK/resolv-$tag" env ETCDCTL_API=3 timeout 20 "$CLIENT" --dial-timeout=2s --command-timeout=3s --discovery-srv "nothing.$d" get k
    stop_all
}

post_normalize() {
    local k out=cat
    for k in 6 5 4 3 2 1 0; do
        out="$out | sed -e 's/$(next_ip "$1" "$k" | sed 's/\./\\./g')\\b/IP$k/g'"
    done
    eval "$out | sed -E -e 's/(etcd|rusted|rustedctl)\\.srv\\.test/DOMAIN/g' -e 's/lookup [^ ]* on [^ ]*:53/lookup NAME on DNS:53/g'"
}

fail=0
run_targets || fail=1

echo "## rusted alone: http peers from _etcd-server._tcp records"
a=127.0.0.251 d=plain.srv.test
zone "$d" "$a" plain >"$WORK/zone-plain.conf"
dns "$a" "$WORK/zone-plain.conf" "m1.$d"
cp "$WORK/resolv-$a" "$WORK/resolv-plain"
for i in 1 2 3; do srv_member "$RUSTED_BIN" plain "m$i" "$(next_ip "$a" "$i")" "$d" http; done
if wait_endpoints "$(next_ip "$a" 1):2379,$(next_ip "$a" 2):2379,$(next_ip "$a" 3):2379" &&
    n=$(ETCDCTL_API=3 "$ETCDCTL_BIN" --endpoints "$(next_ip "$a" 1):2379" member list | grep -c "http://m[123].$d:2380, http://m[123].$d:2379, false") &&
    [ "$n" = 3 ]; then
    echo "$NAME: http-only SRV records: 3 members started"
else
    echo "$NAME: http-only SRV records: the cluster did not form"; tail -5 "$WORK"/plain-m*.log; fail=1
fi
for i in 1 2 3; do stop_pid "${MEMBER_PID[m$i]}"; done
echo "## rusted alone: an advertised URL the records do not name"
out=$(ns "$WORK/resolv-plain" timeout 20 "$RUSTED_BIN" --name m1 --data-dir "$WORK/plain-bad" \
    --listen-client-urls "http://$(next_ip "$a" 4):2379" --advertise-client-urls "http://$(next_ip "$a" 4):2379" \
    --listen-peer-urls "http://$(next_ip "$a" 4):2380" --initial-advertise-peer-urls "http://$(next_ip "$a" 4):2380" \
    --discovery-srv "$d" 2>&1)
if echo "$out" | grep -q 'cannot find local etcd member \\"m1\\" in SRV records'; then
    echo "$NAME: a member the records do not name is refused"
else
    echo "$NAME: a member the records do not name was not refused: $out" | tail -3; fail=1
fi
exit $fail
