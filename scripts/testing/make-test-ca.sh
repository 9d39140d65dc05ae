#!/usr/bin/env bash
# Makes a throwaway CA and one server certificate it signed, for local stand-in servers
# in tests and the demo (never for anything else).
#
#   make-test-ca.sh DIR NAME...    NAMEs are DNS names or IP addresses (subjectAltName)
#
# Writes DIR/ca.pem, DIR/ca.key, DIR/server.pem, DIR/server.key (P-256, valid 2 days).
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: make-test-ca.sh DIR NAME..." >&2; exit 64; fi
dir=$1; shift
mkdir -p "$dir"
san=""
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+="IP:$name,"; else san+="DNS:$name,"; fi
done
san=${san%,}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj "/CN=airlock test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=$1" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -out "$dir/server.pem" -days 2 -extfile "$dir/server.ext" 2>/dev/null
rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
