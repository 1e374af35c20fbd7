#!/bin/sh
# Regenerates the self-test's TLS fixtures (test-only keys, valid for 100 years):
#   ca.pem                      CA that signs server.pem and client.pem (its key is thrown away)
#   server.pem, server.key      127.0.0.1 / localhost, serverAuth
#   client.pem, client.key      CN selftest-client, clientAuth
#   other-client.pem/.key       CN stranger-client, signed by another (thrown away) CA
# Needs OpenSSL 3. Run from this folder: sh gen.sh
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
days=36500
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
ca() { # name cn
  openssl req -x509 $ec -keyout "$tmp/$1.key" -out "$2" -days $days -subj "/CN=$3" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
leaf() { # out ca-cert ca-key cn ext
  openssl req $ec -keyout "$1.key" -out "$tmp/leaf.csr" -subj "/CN=$4" 2>/dev/null
  printf '%s\n' "$5" > "$tmp/ext"
  openssl x509 -req -in "$tmp/leaf.csr" -CA "$2" -CAkey "$3" -CAcreateserial -CAserial "$tmp/serial" -out "$1.pem" -days $days -extfile "$tmp/ext" 2>/dev/null
}
ca ca ca.pem "fhir-server selftest CA"
ca other "$tmp/other-ca.pem" "stranger CA"
leaf server ca.pem "$tmp/ca.key" localhost "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
leaf client ca.pem "$tmp/ca.key" selftest-client "extendedKeyUsage=clientAuth"
leaf other-client "$tmp/other-ca.pem" "$tmp/other.key" stranger-client "extendedKeyUsage=clientAuth"
chmod 600 ./*.key
