#!/usr/bin/env bash
# bench/run.sh: wssd against the naive Rust echo and nginx at terminating wss://
# on loopback, in one run.
#
#   (a) wssd serving wss:// with its echo route (and the same binary on ws://,
#       for the cost of TLS and the idle memory of a plain connection)
#   (b) naive: bench/naive-echo, tokio-tungstenite over tokio-rustls, one task
#       per connection, a flush per message, defaults (built here)
#   (c) nginx terminating TLS (same certificate) in front of a plain ws:// echo
#       backend (wssd --tls off)
#
# Measures with `wssd bench`: idle RSS per connection, echo round trips/s
# (64 B text, 1 and 8 in flight), echo MB/s (16 KiB binary), connects/s (full
# handshakes), each also per server CPU-second, and checks issue 16's targets.
# Writes bench/results/latest.md and bench/results/latest.json. See
# bench/README.md.
#
# Usage: bench/run.sh [--quick] [--no-build]
# Env:   BENCH_SECS (default 10; --quick: 3), BENCH_IDLE_CONNS (5000),
#        BENCH_HOLD (idle hold seconds, default 3; --quick: 1),
#        BENCH_PORT_BASE (default 18440: uses BASE ... BASE+4),
#        BENCH_KEEP=1 keeps the temporary folder (configs, logs),
#        BENCH_SERVER_BIN=PATH runs another wssd binary as the measured wssd
#        (both wssd rows; the client and nginx's backend stay target/release/wssd):
#        before/after comparisons with the same client.
set -euo pipefail
# Helpers shared with bench/proxy.sh and bench/fanout.sh; bench/report.py writes the report.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for arg in "$@"; do bench_arg "$arg"; done

timing_settings 5000
port_base=${BENCH_PORT_BASE:-18440}
wssd_port=$port_base
nginx_port=$((port_base + 1))
backend_port=$((port_base + 2))
plain_port=$((port_base + 3))
naive_port=$((port_base + 4))
naive="$root/target/naive-echo/release/naive-echo"

# Settings must come from this script only: drop any WSSD_* variable (this
# also keeps WSSD_BENCH_ALLOW_REMOTE off: loopback only).
drop_env '^WSSD_'

# ---------------------------------------------------------------- tools
command -v python3 >/dev/null || die "python3 is needed to read the results"
command -v taskset >/dev/null || die "taskset (util-linux) is needed to pin processes to cores"

ensure_pkg nginx "measuring wssd only, the nginx column will read n/a."
nginx_bin=$(find_bin nginx)

# ---------------------------------------------------------------- build
build_wssd --release
build_naive

# ---------------------------------------------------------------- limits, cores
raise_fd_limit
fit_idle_conns "idle connections through nginx"
plan_cores "server and client"
ports_free "$wssd_port" "$nginx_port" "$backend_port" "$plain_port" "$naive_port"

# ---------------------------------------------------------------- processes we own
own_tmp wssd-bench
cd "$tmp" # no stray ./wssd.toml or .env is read by the servers
mkdir -p state nginx/tmp runs

make_cert

# One tokio worker thread for servers confined to one core, like nginx's one worker.
server_limits=(--max-connections 1000000 --max-connections-per-ip 1000000 --log-level warn --state-dir "$tmp/state")

say "wssd (wss://127.0.0.1:$wssd_port, core ${server_cpus:-any})"
TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$server_wssd" --listen "127.0.0.1:$wssd_port" --tls files \
    --cert "$tmp/cert.pem" --key "$tmp/key.pem" --admin off --route /ws/echo=echo \
    "${server_limits[@]}" >"$tmp/wssd.log" 2>&1 &
wssd_pid=$!
pids+=("$wssd_pid")
wait_port "$wssd_port" "$wssd_pid" wssd

say "wssd on ws:// (ws://127.0.0.1:$plain_port, core ${server_cpus:-any})"
TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$server_wssd" --tls off --http "127.0.0.1:$plain_port" \
    --admin off --route /ws/echo=echo "${server_limits[@]}" >"$tmp/wssd-ws.log" 2>&1 &
plain_pid=$!
pids+=("$plain_pid")
wait_port "$plain_port" "$plain_pid" "wssd ws://"

say "naive echo (wss://127.0.0.1:$naive_port, one tokio worker, core ${server_cpus:-any})"
TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$naive" "127.0.0.1:$naive_port" "$tmp/cert.pem" \
    "$tmp/key.pem" >"$tmp/naive.log" 2>&1 &
naive_pid=$!
pids+=("$naive_pid")
wait_port "$naive_port" "$naive_pid" "naive echo"

have_nginx=0
if [[ -n $nginx_bin ]]; then
    say "backend: wssd --tls off (ws://127.0.0.1:$backend_port, core ${server_cpus:-any})"
    start_backend
    start_nginx
    have_nginx=1
fi

# ---------------------------------------------------------------- runs
failures=0
commands_file="$tmp/commands.txt"
: >"$commands_file"

# Server-side process groups whose CPU time each run records.
server_groups() {
    case $1 in
        wssd) echo "wssd=$wssd_pid" ;;
        wssd-ws) echo "wssd=$plain_pid" ;;
        naive) echo "naive=$naive_pid" ;;
        nginx) echo "nginx=$nginx_pid,$nginx_worker backend=$backend_pid" ;;
    esac
}

# bench NAME SERVER MODE URL ARGS...: runs one `wssd bench`, keeps its output,
# its final JSON line and the server-side CPU time it caused.
bench() {
    local server=$2 groups group gpids before=() i=0
    bench_start "$@"
    read -r -a groups <<<"$(server_groups "$server")"
    for group in "${groups[@]}"; do
        IFS=, read -r -a gpids <<<"${group#*=}"
        before+=("$(cpu_ticks "${gpids[@]}")" "$(CPU_FIELDS='$13' cpu_ticks "${gpids[@]}")")
    done
    bench_exec
    {
        echo "$bench_machine"
        for group in "${groups[@]}"; do
            IFS=, read -r -a gpids <<<"${group#*=}"
            # All CPU time, then the kernel's part (GROUP_sys).
            echo "${group%%=*} $(($(cpu_ticks "${gpids[@]}") - before[i]))"
            echo "${group%%=*}_sys $(($(CPU_FIELDS='$13' cpu_ticks "${gpids[@]}") - before[i + 1]))"
            i=$((i + 2))
        done
    } >"$bench_out.cpu"
    bench_show
}

wssd_url="wss://127.0.0.1:$wssd_port/ws/echo"
nginx_url="wss://127.0.0.1:$nginx_port/ws/echo"
plain_url="ws://127.0.0.1:$plain_port/ws/echo"
naive_url="wss://127.0.0.1:$naive_port/ws/echo"
# each NAME MODE ARGS...: wssd, the naive echo and nginx, back to back;
# each_plain also runs wssd on ws:// (the TLS cost is the ratio of the two).
each() {
    local name=$1 mode=$2
    shift 2
    bench "$name" wssd "$mode" "$wssd_url" "$@"
    bench "$name" naive "$mode" "$naive_url" "$@"
    if [[ $have_nginx == 1 ]]; then
        bench "$name" nginx "$mode" "$nginx_url" "$@"
    fi
}
each_plain() {
    each "$@"
    local name=$1 mode=$2
    shift 2
    bench "$name" wssd-ws "$mode" "$plain_url" "$@"
}

# Idle first, on fresh processes: memory freed by earlier runs would otherwise
# be reused and make the per-connection growth look smaller.
bench idle wssd idle "$wssd_url" --conns "$idle_conns" --hold "$hold" --pid "$wssd_pid"
bench idle wssd-ws idle "$plain_url" --conns "$idle_conns" --hold "$hold" --pid "$plain_pid"
bench idle naive idle "$naive_url" --conns "$idle_conns" --hold "$hold" --pid "$naive_pid"
if [[ $have_nginx == 1 ]]; then
    bench idle nginx idle "$nginx_url" --conns "$idle_conns" --hold "$hold" \
        --pid "$nginx_pid,$nginx_worker,$backend_pid"
fi
each_plain echo64 echo --conns 100 --size 64 --secs "$secs"
each_plain echo64x8 echo --conns 100 --size 64 --inflight 8 --secs "$secs"
each echo16k echo --conns 10 --size 16384 --binary --secs "$secs"
each connect connect --workers 16 --secs "$secs"

# ---------------------------------------------------------------- report
mkdir -p "$results_dir"
{
    machine_facts
    echo "nginx=$([[ -n $nginx_bin ]] && "$nginx_bin" -v 2>&1 | sed 's/^nginx version: //' || echo 'not installed')"
    run_settings
    echo "have_nginx=$have_nginx"
    echo "server_bin=${BENCH_SERVER_BIN:-target/release/wssd}" | sed "s#$root/##"
    echo "quick=$quick"
} >"$tmp/machine.txt"
cp "$tmp/nginx/nginx.conf" "$tmp/nginx.conf.txt" 2>/dev/null || true
sed -i "s#$tmp#\$TMP#g" "$tmp/nginx.conf.txt" 2>/dev/null || true

python3 "$root/bench/report.py" "$tmp" "$results_dir"
say "wrote $results_dir/latest.md and $results_dir/latest.json"
cat "$results_dir/latest.md"
if ((failures > 0)); then
    die "$failures bench run(s) failed; their rows read n/a (rerun with BENCH_KEEP=1 to keep the logs)"
fi
