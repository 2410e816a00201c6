#!/usr/bin/env bash
# certs.sh DIR IP...: test certificates for tls.sh: a CA, a server cert for the IPs (and localhost;
# an argument "DNS:name" adds a name), a client cert (CN=client), and
# a second CA with its own client cert; EC P-256, PEM.
set -euo pipefail
d=$1; shift
mkdir -p "$d"; cd "$d"
san="DNS:localhost"
for ip in "$@"; do
    case $ip in DNS:*) san="$san,$ip" ;; *) san="$san,IP:$ip" ;; esac
done
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1-key.pem" -out "$1.pem" -days 30 -subj "/CN=$1" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign >/dev/null 2>&1; }
leaf() { # leaf NAME CA CN SAN
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1-key.pem" -out "$1.csr" -subj "/CN=$3" >/dev/null 2>&1
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$4" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2-key.pem" -CAcreateserial -out "$1.pem" -days 30 -extfile "$1.ext" >/dev/null 2>&1
}
ca ca
ca otherca
leaf server ca server "$san"
leaf client ca client "DNS:client"
leaf other otherca client "DNS:client"
