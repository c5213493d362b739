#!/usr/bin/env bash
# A throwaway CA and, signed by it, a server certificate for the broker and a client certificate for
# the pipeline, to try deploy/compose.yaml with TLS. For production use your organisation's CA.
#
#   deploy/make-dev-certs.sh [OUT_DIR] [SERVER_NAME...]
#
# OUT_DIR: default deploy/certs. The server certificate is valid for localhost, mosquitto (the
# compose service), 127.0.0.1, ::1, this machine's host name and every SERVER_NAME (a DNS name or an
# IPv4 address). Writes ca.crt ca.key server.crt server.key client.crt client.key; an existing CA is
# kept (certificates are re-issued from it), so clients that trust ca.crt keep working.
# Run as root, it gives server.key to uid $MOSQUITTO_UID (default 1883, the eclipse-mosquitto image's
# user) and client.key to uid $BEATS_UID (default 10001, the beats image's user), who must read them.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/certs}
[ $# -gt 0 ] && shift
days=${CERT_DAYS:-825}
command -v openssl >/dev/null || { echo "make-dev-certs: openssl is needed (apt-get install openssl)" >&2; exit 1; }

san="DNS:localhost,DNS:mosquitto,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"
host=$(hostname 2>/dev/null || true)
for name in ${host:+"$host"} "$@"; do
  if [[ $name =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then san+=",IP:$name"; else san+=",DNS:$name"; fi
done

mkdir -p "$out"
cd "$out"
umask 077
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

if [ ! -s ca.key ] || [ ! -s ca.crt ]; then
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days "$days" -subj "/CN=Beats dev CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "made a new CA: $out/ca.crt"
fi

issue() { # name, common name, extensions
  local name=$1 cn=$2 ext=$3
  openssl req "${ec[@]}" -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
  printf '%b' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days "$days" -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
issue server mosquitto "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=$san\n"
issue client beats "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
chmod 644 ca.crt server.crt client.crt
chmod 600 ca.key server.key client.key

if [ "$(id -u)" = 0 ]; then
  chown "${MOSQUITTO_UID:-1883}" server.key
  chown "${BEATS_UID:-10001}" client.key
else
  echo "note: the broker's user must read server.key (container: sudo chown 1883 $out/server.key)," \
       "and the pipeline's user client.key (container: sudo chown 10001 $out/client.key)"
fi
openssl verify -CAfile ca.crt server.crt client.crt >/dev/null
echo "certificates in $out (server names: $san)"
