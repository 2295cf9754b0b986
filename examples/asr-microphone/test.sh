#!/usr/bin/env bash
# examples/asr-microphone/test.sh: the speech-recognition seed end to end.
#
# Starts, on loopback and free ports: the stand-in recognizer
# (asr_server.py, plain ws://) and wssd in front of it with --tls local-ca,
# serving public/ and proxying /ws/asr (the README's command). The local CA
# goes into a fresh NSS database with `wssd cert ca install` (HOME is a
# temporary folder; as root the system store too, undone at exit). Then
# browser.test.mjs drives Chromium, which trusts the certificate (no
# certificate error ignored) and has a fake microphone playing a spoken WAV
# (espeak-ng + sox): the page and the bundled client each stream it and get
# the final result.
#
# Environment: WSSD_BIN (default target/debug/wssd), BROWSER_ARTIFACTS
# (screenshots; default target/browser), CHROMIUM_BIN.
# Needs: python3 + websockets, node + tests/browser/node_modules, chromium,
# certutil, espeak-ng, sox (scripts/install-test-deps installs them).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WSSD_BIN="${WSSD_BIN:-target/debug/wssd}"
case "$WSSD_BIN" in /*) ;; *) WSSD_BIN="$ROOT/$WSSD_BIN" ;; esac
export WSSD_BIN
export BROWSER_ARTIFACTS="${BROWSER_ARTIFACTS:-$ROOT/target/browser}"
[ -x "$WSSD_BIN" ] || { echo "$WSSD_BIN not found: run cargo build --bin wssd (or set WSSD_BIN)" >&2; exit 1; }
[ -d "$ROOT/tests/browser/node_modules/playwright-core" ] ||
  { echo "tests/browser/node_modules missing: run scripts/install-test-deps" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/wssd-asr.XXXXXX")"
STATE="$TMP/state"
export HOME_FOR_CHROMIUM="$TMP/home"
mkdir -p "$HOME_FOR_CHROMIUM"
PIDS=()
CA_INSTALLED=0

# stop PID: SIGTERM, then SIGKILL after 10 s.
stop() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do stop "$pid"; done
  if [ "$CA_INSTALLED" = 1 ]; then
    HOME="$HOME_FOR_CHROMIUM" "$WSSD_BIN" cert ca uninstall --state-dir "$STATE" >/dev/null ||
      echo "warning: wssd cert ca uninstall failed" >&2
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
# wait_until SECS WHAT PID COMMAND...: poll COMMAND every 0.1 s; fail when PID exits or time is up.
wait_until() {
  local secs="$1" what="$2" pid="$3" i
  shift 3
  for ((i = 0; i < secs * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "$what: process $pid exited" >&2; return 1; }
    sleep 0.1
  done
  echo "$what: not ready within ${secs}s" >&2
  return 1
}
port_open() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# ready ADMIN_PORT: wssd's admin /readyz answers 200.
ready() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2)' "$1"
}
show_logs() {
  local f
  for f in "$TMP"/*.log; do
    echo "--- last lines of $(basename "$f"):" >&2
    tail -n 20 "$f" | sed 's/^/  | /' >&2
  done
}

# The speech the fake microphone plays (Chromium loops it).
espeak-ng -w "$TMP/speech-raw.wav" "Hello. This is a test of the speech recognition demo behind wssd."
sox "$TMP/speech-raw.wav" -r 48000 -c 1 -b 16 "$TMP/speech.wav" norm -3 pad 0 0.5
export SPEECH_WAV="$TMP/speech.wav"

# 1. The recognizer, plain ws:// on loopback.
ASR_PORT="$(free_port)"
python3 "$HERE/asr_server.py" --port "$ASR_PORT" >"$TMP/asr.log" 2>&1 &
PIDS+=($!)
wait_until 20 "asr_server.py" "${PIDS[-1]}" port_open "$ASR_PORT" || { show_logs; exit 1; }

# 2. Trust the local CA (created here) in Chromium's NSS database.
HOME="$HOME_FOR_CHROMIUM" "$WSSD_BIN" cert ca install --state-dir "$STATE" >"$TMP/ca-install.log" 2>&1 ||
  { show_logs; exit 1; }
CA_INSTALLED=1

# 3. wssd in front: the README's command, on free loopback ports.
PORT="$(free_port)"
ADMIN="$(free_port)"
(cd "$HERE" && HOME="$HOME_FOR_CHROMIUM" exec "$WSSD_BIN" --tls local-ca --state-dir "$STATE" \
  --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN" \
  --route /=static:./public --route /client=static \
  --route "/ws/asr=proxy:ws://127.0.0.1:$ASR_PORT") >"$TMP/wssd.log" 2>&1 &
PIDS+=($!)
wait_until 30 "wssd" "${PIDS[-1]}" ready "$ADMIN" || { show_logs; exit 1; }

# 4. Chromium: the page, then the bundled client.
export ORIGIN="https://localhost:$PORT"
if ! (cd "$ROOT" && timeout 180 node --test "$HERE/browser.test.mjs"); then
  show_logs
  exit 1
fi
echo "asr-microphone: ok"
