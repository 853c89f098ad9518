#!/bin/sh
# Development PKI for whizard: a CA, a server certificate for localhost/127.0.0.1 and client
# certificates (clientAuth) with the given names as CN (a user logs in with one through its
# `users[].certificate` mapping).
#
#   certs/gen.sh [OUT_DIR] [CLIENT_NAME...]      (default OUT_DIR: certs/out, clients: agent-a)
#
# Output (PEM): ca.crt ca.key server.crt server.key client-NAME.crt client-NAME.key
# An existing CA in OUT_DIR is reused, so re-running adds clients / renews the server cert.
# Keys are for development only and are never committed (see .gitignore).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
[ $# -gt 0 ] && shift
clients=${*:-agent-a}
days=${DAYS:-365}
# Extra SANs for the server certificate, e.g. SERVER_SANS="DNS:whizard.example,IP:10.0.0.5"
server_sans=${SERVER_SANS:-}

mkdir -p "$out"
cd "$out"
umask 077

if [ ! -f ca.crt ] || [ ! -f ca.key ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout ca.key -out ca.crt -days "$days" -subj "/CN=whizard development CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "created CA            $out/ca.crt"
fi

issue() { # name cn extfile-content
  printf '%s\n' "$3" > "$1.ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out "$1.crt" -days "$days" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

sans="DNS:localhost,IP:127.0.0.1,IP:::1"
[ -n "$server_sans" ] && sans="$sans,$server_sans"
issue server localhost "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$sans"
echo "created server cert   $out/server.crt ($sans)"

for name in $clients; do
  issue "client-$name" "$name" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
  echo "created client cert   $out/client-$name.crt (CN=$name)"
done
chmod 644 ./*.crt
