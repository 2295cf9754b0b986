#!/usr/bin/env bash
# The device console recipe end to end: wssd with this folder's wssd.toml
# (listeners moved to free loopback ports), then check_console.py: the
# password over ws:// and wss://, 401 without it, the per-listener caps;
# then the memory of idle TLS console sessions on a second run; then, on a
# third run with `--tls local-ca` (its CA installed with `wssd cert ca
# install` in a temporary HOME; as root the system store too, undone at
# exit), browser.test.mjs: Chromium opens the page over https:// (trusted,
# no certificate error ignored) and http://, answers the basic-auth
# challenge, and the page's console answers a command; 401 without the
# password.
#
# Environment: WSSD_BIN (default target/debug/wssd), BROWSER_ARTIFACTS
# (screenshots; default target/browser), CHROMIUM_BIN.
# Needs: python3 + websockets, curl, node + tests/browser/node_modules,
# chromium, certutil (scripts/install-test-deps installs them).
set -euo pipefail
# shellcheck source=examples/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
export BROWSER_ARTIFACTS="${BROWSER_ARTIFACTS:-$ROOT/target/browser}"
[ -d "$ROOT/tests/browser/node_modules/playwright-core" ] ||
    { echo "tests/browser/node_modules missing: run scripts/install-test-deps" >&2; exit 1; }
start=$SECONDS
pid=
wssd_home=$HOME
export HOME_FOR_CHROMIUM=$TMP/home
mkdir -p "$HOME_FOR_CHROMIUM"
ca_installed=0
# Run at exit by lib.sh, after the processes are stopped.
at_exit() {
    if [ "$ca_installed" = 1 ]; then
        HOME=$HOME_FOR_CHROMIUM "$WSSD_BIN" cert ca uninstall --state-dir "$TMP/state" >/dev/null ||
            echo "warning: wssd cert ca uninstall failed" >&2
    fi
}

# Starts wssd in this folder (extra flags in "$@"), without the caller's
# WSSD_* variables; returns once /readyz says so.
run_wssd() {
    tls=$(free_port) http=$(free_port) admin=$(free_port)
    # shellcheck disable=SC2046
    (cd "$HERE" && exec env $(no_wssd_env) HOME="$wssd_home" "$WSSD_BIN" \
        --config wssd.toml --state-dir "$TMP/state" --listen "127.0.0.1:$tls" \
        --http "127.0.0.1:$http" --admin "127.0.0.1:$admin" "$@") >"$TMP/wssd.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ready "$pid" "$admin" || { show_logs; exit 1; }
}

stop_wssd() { stop "$pid"; pid=; }

ports() { echo --tls-port "$tls" --http-port "$http" --admin-port "$admin" --cert "$TMP/state/self-signed/cert.pem"; }

run_wssd
# shellcheck disable=SC2046
timeout 120 python3 "$HERE/check_console.py" caps $(ports) || { show_logs; exit 1; }
grep -q "its listener's cap (--listen-max-connections or --http-max-connections) reached" "$TMP/wssd.log" \
    || { echo "no refusal line in the log" >&2; exit 1; }
stop_wssd

# Memory per TLS session: the same config with the TLS cap raised for the count.
sessions=32
run_wssd --listen-max-connections $((sessions + 8))
# shellcheck disable=SC2046
timeout 120 python3 "$HERE/check_console.py" memory $(ports) --pid "$pid" --sessions "$sessions" \
    || { show_logs; exit 1; }
stop_wssd

# The browser: the README's `mode = "local-ca"` variant, its CA trusted.
HOME=$HOME_FOR_CHROMIUM "$WSSD_BIN" cert ca install --state-dir "$TMP/state" >"$TMP/ca-install.log" 2>&1 ||
    { show_logs; exit 1; }
ca_installed=1
wssd_home=$HOME_FOR_CHROMIUM
run_wssd --tls local-ca
export TLS_ORIGIN="https://localhost:$tls" HTTP_ORIGIN="http://127.0.0.1:$http"
(cd "$ROOT" && timeout 180 node --test "$HERE/browser.test.mjs") || { show_logs; exit 1; }
stop_wssd
echo "device-console: ok in $((SECONDS - start)) s"
