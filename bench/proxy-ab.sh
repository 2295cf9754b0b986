#!/usr/bin/env bash
# bench/proxy-ab.sh: A/B of two wssd binaries as the wss:// -> ws:// proxy, in
# one run, alternated (A, B, A, B, ...) so that other load on the machine
# touches both alike. Both fronts and one plain ws:// echo backend share core
# 0 (one tokio worker each); the client (`wssd bench echo`, from binary B)
# runs on the other core(s).
#
# Per run it prints: msgs/s, the front's and the backend's CPU seconds, round
# trips per busy core-second (front + backend CPU, the figure of issue 16),
# the front's CPU microseconds per round trip and, with BENCH_SYSCALLS=1, the
# front's system calls per round trip (`perf stat -e raw_syscalls:sys_enter`
# and a few named calls, attached to the front for the run). One round trip
# is two relayed messages (client -> upstream, upstream -> client).
#
# Usage: bench/proxy-ab.sh OLD_WSSD NEW_WSSD
# Env:   BENCH_SECS (5), BENCH_ROUNDS (3), BENCH_CONNS (100), BENCH_SIZE (64),
#        BENCH_INFLIGHT (8), BENCH_FLUSH_EACH=1 (the client flushes after every
#        message: one TLS record each, as browsers send; B must have
#        `wssd bench echo --flush-each`), BENCH_PORT_BASE (18460: BASE old, BASE+1 new,
#        BASE+2 backend), BENCH_SYSCALLS=1 (count system calls; needs perf and
#        perf_event_paranoid <= 1 or root), BENCH_KEEP=1 keeps the temp folder.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
(($# == 2)) || die "usage: bench/proxy-ab.sh OLD_WSSD NEW_WSSD (try --help)"
bin_a=$(realpath "$1")
bin_b=$(realpath "$2")
[[ -x $bin_a && -x $bin_b ]] || die "both arguments must be wssd binaries"
wssd=$bin_b # make_cert, the backend and the client use B

secs=${BENCH_SECS:-5}
rounds=${BENCH_ROUNDS:-3}
conns=${BENCH_CONNS:-100}
size=${BENCH_SIZE:-64}
inflight=${BENCH_INFLIGHT:-8}
port_base=${BENCH_PORT_BASE:-18460}
for v in secs rounds conns size inflight port_base; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_${v^^} must be a positive whole number, not '${!v}'"
done
syscalls=${BENCH_SYSCALLS:-0}
flush_each=()
[[ ${BENCH_FLUSH_EACH:-0} == 1 ]] && flush_each=(--flush-each)
if [[ $syscalls == 1 ]]; then
    command -v perf >/dev/null || die "BENCH_SYSCALLS=1 needs perf (Debian: apt-get install linux-perf)"
fi
port_a=$port_base
port_b=$((port_base + 1))
backend_port=$((port_base + 2))

drop_env '^WSSD_'
raise_fd_limit
plan_cores "servers and client"
ports_free "$port_a" "$port_b" "$backend_port"
own_tmp wssd-proxy-ab
cd "$tmp"
mkdir -p state-a state-b state
make_cert
server_limits=(--max-connections 1000000 --max-connections-per-ip 1000000 --log-level warn --state-dir "$tmp/state")
start_backend "$tmp/backend.log"

start_front() { # start_front BIN PORT STATE_DIR LOG: sets front_pid (added to pids)
    TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$1" --listen "127.0.0.1:$2" --tls files \
        --cert "$tmp/cert.pem" --key "$tmp/key.pem" --admin off \
        --route "/ws/echo=proxy:ws://127.0.0.1:$backend_port" \
        --max-connections 1000000 --max-connections-per-ip 1000000 --log-level warn \
        --state-dir "$3" >"$4" 2>&1 &
    front_pid=$!
    pids+=("$front_pid")
}
start_front "$bin_a" "$port_a" "$tmp/state-a" "$tmp/a.log"
pid_a=$front_pid
start_front "$bin_b" "$port_b" "$tmp/state-b" "$tmp/b.log"
pid_b=$front_pid
wait_port "$port_a" "$pid_a" "front A" "$tmp/a.log"
wait_port "$port_b" "$pid_b" "front B" "$tmp/b.log"
clk=$(getconf CLK_TCK)

events=raw_syscalls:sys_enter,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait
say "A=$1 B=$2; $rounds rounds x ${secs}s; echo --conns $conns --size $size --inflight $inflight ${flush_each[*]}"
printf '%-5s %-3s %10s %8s %8s %14s %11s %s\n' run bin msgs/s front_s back_s rt/busy_core_s front_us/rt \
    "$([[ $syscalls == 1 ]] && echo 'front syscalls/rt (all write writev sendto read recvfrom epoll_wait)')"
one_run() { # one_run LABEL PORT PID ROUND
    local label=$1 port=$2 pid=$3 round=$4 f0 b0 f1 b1 out rt stat="" perf_pid=""
    f0=$(cpu_ticks "$pid")
    b0=$(cpu_ticks "$backend_pid")
    if [[ $syscalls == 1 ]]; then
        perf stat -x, -e "$events" -p "$pid" -o "$tmp/perf.$label.$round" &
        perf_pid=$!
        sleep 0.2
    fi
    out=$(timeout $((secs + 120)) env TOKIO_WORKER_THREADS="$client_threads" "${pin_client[@]}" "$wssd" bench echo \
        "wss://127.0.0.1:$port/ws/echo" --ca "$tmp/cert.pem" --conns "$conns" --size "$size" \
        --inflight "$inflight" "${flush_each[@]}" --secs "$secs" | tail -n 1)
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        stat=$(awk -F, -v rt_json="$out" '
            BEGIN { match(rt_json, /"round_trips":[0-9]+/); rt = substr(rt_json, RSTART + 14, RLENGTH - 14) }
            /^[0-9]/ { n[++i] = $1 }
            END { for (j = 1; j <= i; j++) printf "%.2f ", n[j] / rt }' "$tmp/perf.$label.$round")
    fi
    f1=$(cpu_ticks "$pid")
    b1=$(cpu_ticks "$backend_pid")
    python3 - "$out" "$((f1 - f0))" "$((b1 - b0))" "$clk" "$label" "$round" "$stat" <<'EOF'
import json, sys
r = json.loads(sys.argv[1]); f, b, clk = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rt = r["round_trips"]; fs, bs = f / clk, b / clk
busy = rt / (fs + bs) if fs + bs else 0
print(f"{sys.argv[6]:<5} {sys.argv[5]:<3} {r['msgs_per_sec']:>10.0f} {fs:>8.2f} {bs:>8.2f} {busy:>14.0f} "
      f"{1e6 * fs / rt if rt else 0:>11.2f} {sys.argv[7]}" + (f" errors={r['errors']}" if r["errors"] else ""))
EOF
    sleep 1 # the connections of this run close before the next starts
}
for round in $(seq "$rounds"); do
    one_run A "$port_a" "$pid_a" "$round"
    one_run B "$port_b" "$pid_b" "$round"
done
