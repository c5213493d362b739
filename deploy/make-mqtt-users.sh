#!/usr/bin/env bash
# The Mosquitto accounts of deploy/mosquitto/acl: beats (the pipeline), operator (sends feedback),
# viewer (dashboards, read only). Writes the password file deploy/mosquitto/passwd (hashed by
# mosquitto_passwd) and the passwords to deploy/.env, which docker compose reads: MQTT_PASSWORD
# (the pipeline's), OPERATOR_PASSWORD, VIEWER_PASSWORD. Passwords already set in the environment or
# in .env are kept; missing ones are made random.
#
#   deploy/make-mqtt-users.sh [DIR]     DIR: where passwd and .env go (default: deploy/ beside this script)
#
# mosquitto_passwd comes from the mosquitto package (apt-get install mosquitto); without it, the
# eclipse-mosquitto image's is used through docker. Run as root, passwd is given to uid
# $MOSQUITTO_UID (default 1883, the eclipse-mosquitto image's user), who must read it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here}
mkdir -p "$dir/mosquitto"
env_file=$dir/.env
passwd=$dir/mosquitto/passwd
umask 077

# The environment wins over .env, .env over a new random password.
given_mqtt=${MQTT_PASSWORD:-} given_operator=${OPERATOR_PASSWORD:-} given_viewer=${VIEWER_PASSWORD:-}
if [ -f "$env_file" ]; then set -a; . "$env_file"; set +a; fi
random() { openssl rand -base64 24 | tr -d '/+=\n'; }
MQTT_PASSWORD=${given_mqtt:-${MQTT_PASSWORD:-$(random)}}
OPERATOR_PASSWORD=${given_operator:-${OPERATOR_PASSWORD:-$(random)}}
VIEWER_PASSWORD=${given_viewer:-${VIEWER_PASSWORD:-$(random)}}

# Plain "user:password" lines, hashed in place (-U): no password on a command line.
printf 'beats:%s\noperator:%s\nviewer:%s\n' "$MQTT_PASSWORD" "$OPERATOR_PASSWORD" "$VIEWER_PASSWORD" > "$passwd"
if command -v mosquitto_passwd >/dev/null; then
  mosquitto_passwd -U "$passwd"
elif command -v docker >/dev/null; then
  docker run --rm -v "$dir/mosquitto:/w" eclipse-mosquitto:2 mosquitto_passwd -U /w/passwd
else
  rm -f "$passwd"
  echo "make-mqtt-users: mosquitto_passwd is needed (apt-get install mosquitto, or docker)" >&2
  exit 1
fi
chmod 600 "$passwd"
[ "$(id -u)" = 0 ] && chown "${MOSQUITTO_UID:-1883}" "$passwd"

{
  grep -vE '^(MQTT_PASSWORD|OPERATOR_PASSWORD|VIEWER_PASSWORD)=' "$env_file" 2>/dev/null || true
  printf 'MQTT_PASSWORD=%s\nOPERATOR_PASSWORD=%s\nVIEWER_PASSWORD=%s\n' "$MQTT_PASSWORD" "$OPERATOR_PASSWORD" "$VIEWER_PASSWORD"
} > "$env_file.new"
mv "$env_file.new" "$env_file"
echo "accounts beats, operator, viewer in $passwd; their passwords in $env_file"
