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

# shellcheck source=examples/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
export BROWSER_ARTIFACTS="${BROWSER_ARTIFACTS:-$ROOT/target/browser}"
[ -d "$ROOT/tests/browser/node_modules/playwright-core" ] ||
  { echo "tests/browser/node_modules missing: run scripts/install-test-deps" >&2; exit 1; }

STATE="$TMP/state"
export HOME_FOR_CHROMIUM="$TMP/home"
mkdir -p "$HOME_FOR_CHROMIUM"
CA_INSTALLED=0
# Run at exit by lib.sh, after the processes are stopped.
at_exit() {
  if [ "$CA_INSTALLED" = 1 ]; then
    HOME="$HOME_FOR_CHROMIUM" "$WSSD_BIN" cert ca uninstall --state-dir "$STATE" >/dev/null ||
      echo "warning: wssd cert ca uninstall failed" >&2
  fi
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
wait_ready "${PIDS[-1]}" "$ADMIN" || { show_logs; exit 1; }

# 4. Chromium: the page, then the bundled client.
export ORIGIN="https://localhost:$PORT"
if ! (cd "$ROOT" && timeout 180 node --test "$HERE/browser.test.mjs"); then
  show_logs
  exit 1
fi
echo "asr-microphone: ok"
