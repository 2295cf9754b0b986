#!/usr/bin/env bash
# The device console recipe end to end: wssd with this folder's wssd.toml
# (listeners moved to free loopback ports), then check_console.py: the
# password over ws:// and wss://, 401 without it, the per-listener caps;
# then the memory of idle TLS console sessions on a second run.
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

# Starts wssd in this folder (extra flags in "$@"); returns once /readyz says so.
run_wssd() {
    tls=$(free_port) http=$(free_port) admin=$(free_port)
    (cd "$here" && exec env $(env | sed -n 's/^\(WSSD_[A-Z_]*\)=.*/-u \1/p') "$bin" \
        --config wssd.toml --state-dir "$tmp/state" --listen "127.0.0.1:$tls" \
        --http "127.0.0.1:$http" --admin "127.0.0.1:$admin" "$@") >"$tmp/wssd.log" 2>&1 &
    pid=$!
    for _ in $(seq 400); do
        curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "wssd did not get ready:" >&2; cat "$tmp/wssd.log" >&2; exit 1
}

stop_wssd() { kill "$pid"; wait "$pid" || true; pid=; }

ports() { echo --tls-port "$tls" --http-port "$http" --admin-port "$admin" --cert "$tmp/state/self-signed/cert.pem"; }

run_wssd
# shellcheck disable=SC2046
timeout 120 python3 "$here/check_console.py" caps $(ports) || { cat "$tmp/wssd.log" >&2; exit 1; }
grep -q "its listener's cap (--listen-max-connections or --http-max-connections) reached" "$tmp/wssd.log" \
    || { echo "no refusal line in the log" >&2; exit 1; }
stop_wssd

# Memory per TLS session: the same config with the TLS cap raised for the count.
sessions=32
run_wssd --listen-max-connections $((sessions + 8))
# shellcheck disable=SC2046
timeout 120 python3 "$here/check_console.py" memory $(ports) --pid "$pid" --sessions "$sessions" \
    || { cat "$tmp/wssd.log" >&2; exit 1; }
stop_wssd
echo "device-console: ok in $((SECONDS - start)) s"
