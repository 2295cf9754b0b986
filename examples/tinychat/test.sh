#!/usr/bin/env bash
# The TinyChat recipe end to end: this folder's .env (its paths moved under a
# temporary /etc/letsencrypt and its listener to a free loopback port),
# certificates laid out as certbot does; TinyChat's own messages, then a
# certbot-style renewal under an open socket.
set -euo pipefail
# shellcheck source=examples/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
start=$SECONDS
port=$(free_port) admin=$(free_port)
le=$TMP/letsencrypt name=chat.example.com

# What certbot left after `certbot certonly -d chat.example.com`.
python3 "$HERE/certbot_like.py" "$le" issue "$name" 1 >/dev/null
python3 "$HERE/certbot_like.py" "$le" deploy "$name" 1

# The working folder: this folder's .env, as a user would have it, with the
# machine's paths and port replaced by the test's.
mkdir "$TMP/work"
sed -e "s|/etc/letsencrypt|$le|" -e "s|^WSSD_LISTEN=.*|WSSD_LISTEN=127.0.0.1:$port|" \
    "$HERE/.env" >"$TMP/work/.env"
password=$(sed -n 's/^WSSD_MOD_PASSWORD=//p' "$HERE/.env")
# shellcheck disable=SC2046
(cd "$TMP/work" && exec env $(no_wssd_env) "$WSSD_BIN" \
    --admin "127.0.0.1:$admin" --state-dir "$TMP/state") >"$TMP/wssd.log" 2>&1 &
PIDS+=($!)
wait_ready "${PIDS[-1]}" "$admin" || { show_logs; exit 1; }
fail() { echo "$1" >&2; show_logs; exit 1; }
grep -q "not read by wssd" "$TMP/wssd.log" && fail "the wssd .env still holds TinyChat settings"

common=(--port "$port" --admin-port "$admin" --ca "$le/ca.pem")
timeout 60 python3 "$HERE/check_tinychat.py" chat "${common[@]}" --password "$password" || fail "chat failed"
timeout 90 python3 "$HERE/check_tinychat.py" renewal "${common[@]}" --root "$le" --name "$name" \
    || fail "renewal failed"

# TinyChat's own .env in the working folder: every key gets its wssd equivalent.
cp "$HERE/before.env" "$TMP/work/.env"
# shellcheck disable=SC2046
hints=$(cd "$TMP/work" && env $(no_wssd_env) timeout 30 "$WSSD_BIN" check \
    --listen 127.0.0.1:0 --admin 127.0.0.1:0 --state-dir "$TMP/state" 2>&1 || true)
for key in HOST PORT USE_SSL SSL_CERT_PATH SSL_KEY_PATH MOD_PASSWORD; do
    grep -q "$key in .env is not read by wssd" <<<"$hints" || fail "no hint for $key: $hints"
done
echo "ok: TinyChat's .env gets one line per key naming the wssd option"
echo "tinychat: ok in $((SECONDS - start)) s"
