#!/usr/bin/env bash
# examples/companion-app/test.sh: the FastAPI/uvicorn companion app behind
# wssd, end to end (~100 s; see check.py for what it proves).
#
# Starts, on loopback and free ports: app.py under uvicorn (plain HTTP, the
# README's command) and wssd with this folder's wssd.toml (its upstream
# port rewritten to the app's; --listen, --admin, --cert, --key and
# --state-dir given as flags, which win over the file), with a certificate
# for app.example.test made by `wssd cert generate`. Then check.py.
#
# The test process holds SOCKETS (1000) sockets and uvicorn as many: the
# soft open-file limit is raised to 8192 for them when it is lower (the hard
# limit permitting). wssd (twice as many: client and upstream legs) starts
# with the shell's own soft limit, as a user's would, and raises it itself.
#
# Environment: WSSD_BIN (default target/debug/wssd), IDLE_SECS (90),
# SOCKETS (1000). Needs python3 with fastapi, uvicorn and websockets
# (scripts/install-test-deps).
set -euo pipefail

# shellcheck source=examples/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

want_files=8192
shell_files="$(ulimit -Sn)"
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$want_files" ]; then
  hard="$(ulimit -Hn)"
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$want_files" ]; then want_files="$hard"; fi
  ulimit -Sn "$want_files"
  echo "raised the soft open-file limit to $(ulimit -Sn) for this test"
fi

# 1. The app, plain HTTP on loopback (the README's uvicorn command).
APP_PORT="$(free_port)"
(cd "$HERE" && exec python3 -m uvicorn app:app --host 127.0.0.1 --port "$APP_PORT" \
  --proxy-headers --forwarded-allow-ips 127.0.0.1) >"$TMP/uvicorn.log" 2>&1 &
PIDS+=($!)
wait_until 30 "uvicorn" "${PIDS[-1]}" port_open "$APP_PORT" || { show_logs; exit 1; }

# 2. wssd with wssd.toml, the upstream pointed at the app's port.
export CERT="$TMP/live/fullchain.pem" KEY="$TMP/live/privkey.pem"
mkdir -p "$TMP/live"
"$WSSD_BIN" cert generate --hostname app.example.test --out-cert "$CERT" --out-key "$KEY" >/dev/null
sed "s|http://127.0.0.1:8000|http://127.0.0.1:$APP_PORT|" "$HERE/wssd.toml" >"$TMP/wssd.toml"
grep -q "127.0.0.1:$APP_PORT" "$TMP/wssd.toml" || { echo "wssd.toml: upstream not rewritten" >&2; exit 1; }
export WSSD_PORT ADMIN_PORT
WSSD_PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
(cd "$TMP" && ulimit -Sn "$shell_files" && exec "$WSSD_BIN" --config "$TMP/wssd.toml" --state-dir "$TMP/state" \
  --listen "127.0.0.1:$WSSD_PORT" --admin "127.0.0.1:$ADMIN_PORT" --cert "$CERT" --key "$KEY") \
  >"$TMP/wssd.log" 2>&1 &
PIDS+=($!)
wait_ready "${PIDS[-1]}" "$ADMIN_PORT" || { show_logs; exit 1; }

# 3. The checks (bounded: the idle time plus 150 s).
idle="${IDLE_SECS:-90}"
if ! timeout "$((${idle%.*} + 150))" python3 "$HERE/check.py"; then
  show_logs
  exit 1
fi
for pid in "${PIDS[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "process $pid exited during the checks" >&2; show_logs; exit 1; }
done
echo "companion-app: ok"
