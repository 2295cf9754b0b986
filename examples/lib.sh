# examples/lib.sh: the shell helpers every examples/*/test.sh shares.
# Sourced, not run (scripts/test runs only examples/*/test.sh):
#
#   set -euo pipefail
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
#
# Sourcing it sets
#   HERE       the sourcing test's folder (examples/NAME)
#   ROOT       the repository
#   WSSD_BIN   the binary under test, absolute (default target/debug/wssd,
#              relative paths from ROOT), exported; exits 1 when it is missing
#   TMP        a fresh temporary folder (wssd-NAME.XXXXXX), removed at exit
#   PIDS       the processes this test started (PIDS+=($!)), stopped at exit
# and traps EXIT (stops PIDS by PID, runs the test's `at_exit` function when
# it defines one, removes TMP) and INT/TERM (exit 130).
#
# Functions: free_port, port_open PORT, ready ADMIN_PORT, wait_until SECS
# WHAT PID COMMAND..., wait_ready PID ADMIN_PORT, stop PID, show_logs,
# no_wssd_env (the `env -u` arguments that clear every WSSD_* variable).

HERE="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WSSD_BIN="${WSSD_BIN:-target/debug/wssd}"
case "$WSSD_BIN" in /*) ;; *) WSSD_BIN="$ROOT/$WSSD_BIN" ;; esac
export WSSD_BIN
[ -x "$WSSD_BIN" ] || { echo "$WSSD_BIN not found: run cargo build --bin wssd (or set WSSD_BIN)" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/wssd-$(basename "$HERE").XXXXXX")"
PIDS=()

# stop PID: SIGTERM, then SIGKILL after 10 s; waits for it and drops it from PIDS.
stop() {
  local pid="$1" i rest=() p
  for p in ${PIDS[@]+"${PIDS[@]}"}; do [ "$p" = "$pid" ] || rest+=("$p"); done
  PIDS=(${rest[@]+"${rest[@]}"})
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
_examples_cleanup() {
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do stop "$pid"; done
  if declare -F at_exit >/dev/null; then at_exit || true; fi
  rm -rf "$TMP"
}
trap _examples_cleanup EXIT
trap 'exit 130' INT TERM

# free_port: a TCP port free on 127.0.0.1 right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
# port_open PORT: something accepts on 127.0.0.1:PORT.
port_open() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# ready ADMIN_PORT: wssd's admin /readyz answers 200.
ready() { curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$1/readyz"; }
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
# wait_ready PID ADMIN_PORT: wait (30 s at most) until wssd (PID) is ready.
wait_ready() { wait_until 30 wssd "$1" ready "$2"; }
# show_logs: the last lines of every TMP/*.log, on stderr.
show_logs() {
  local f
  for f in "$TMP"/*.log; do
    [ -e "$f" ] || continue
    echo "--- last lines of $(basename "$f"):" >&2
    tail -n 40 "$f" | sed 's/^/  | /' >&2
  done
}
# no_wssd_env: `-u NAME` for every WSSD_* variable of the environment, for
# `env $(no_wssd_env) ...` (a recipe run as a user would, none of the
# caller's WSSD_* settings leaking in).
no_wssd_env() { env | sed -n 's/^\(WSSD_[A-Z_]*\)=.*/-u \1/p'; }
