#!/usr/bin/env bash
# The TinyChat recipe end to end: this folder's .env (its paths moved under a
# temporary /etc/letsencrypt and its listener to a free loopback port),
# certificates laid out as certbot does; TinyChat's own messages, then a
# certbot-style renewal under an open socket.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${WSSD_BIN:-target/debug/wssd}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
[ -x "$bin" ] || { echo "no wssd binary at $bin (cargo build first, or set WSSD_BIN)" >&2; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
start=$SECONDS
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port) admin=$(free_port)
le=$tmp/letsencrypt name=chat.example.com

# What certbot left after `certbot certonly -d chat.example.com`.
python3 "$here/certbot_like.py" "$le" issue "$name" 1 >/dev/null
python3 "$here/certbot_like.py" "$le" deploy "$name" 1

# The working folder: this folder's .env, as a user would have it, with the
# machine's paths and port replaced by the test's.
mkdir "$tmp/work"
sed -e "s|/etc/letsencrypt|$le|" -e "s|^WSSD_LISTEN=.*|WSSD_LISTEN=127.0.0.1:$port|" \
    "$here/.env" >"$tmp/work/.env"
password=$(sed -n 's/^WSSD_MOD_PASSWORD=//p' "$here/.env")
(cd "$tmp/work" && exec env $(env | sed -n 's/^\(WSSD_[A-Z_]*\)=.*/-u \1/p') "$bin" \
    --admin "127.0.0.1:$admin" --state-dir "$tmp/state") >"$tmp/wssd.log" 2>&1 &
pid=$!
for _ in $(seq 400); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || { echo "wssd did not get ready:" >&2; cat "$tmp/wssd.log" >&2; exit 1; }
fail() { echo "$1" >&2; cat "$tmp/wssd.log" >&2; exit 1; }
grep -q "not read by wssd" "$tmp/wssd.log" && fail "the wssd .env still holds TinyChat settings"

common=(--port "$port" --admin-port "$admin" --ca "$le/ca.pem")
timeout 60 python3 "$here/check_tinychat.py" chat "${common[@]}" --password "$password" || fail "chat failed"
timeout 90 python3 "$here/check_tinychat.py" renewal "${common[@]}" --root "$le" --name "$name" \
    || fail "renewal failed"

# TinyChat's own .env in the working folder: every key gets its wssd equivalent.
cp "$here/before.env" "$tmp/work/.env"
hints=$(cd "$tmp/work" && env $(env | sed -n 's/^\(WSSD_[A-Z_]*\)=.*/-u \1/p') timeout 30 "$bin" check \
    --listen 127.0.0.1:0 --admin 127.0.0.1:0 --state-dir "$tmp/state" 2>&1 || true)
for key in HOST PORT USE_SSL SSL_CERT_PATH SSL_KEY_PATH MOD_PASSWORD; do
    grep -q "$key in .env is not read by wssd" <<<"$hints" || fail "no hint for $key: $hints"
done
echo "ok: TinyChat's .env gets one line per key naming the wssd option"
echo "tinychat: ok in $((SECONDS - start)) s"
