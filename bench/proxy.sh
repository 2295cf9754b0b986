#!/usr/bin/env bash
# bench/proxy.sh: wss:// echo through three TLS-terminating reverse proxies in
# front of one plain ws:// echo backend, on loopback, in one run:
#
#   (a) wssd     --tls files --route /ws/echo=proxy:ws://127.0.0.1:BACKEND
#   (b) nginx    ssl + proxy_pass (worker_processes 1)
#   (c) Caddy    tls + reverse_proxy (GOMAXPROCS=1)
#
# all with the same certificate, all relaying to the same backend
# (wssd --tls off, echo route). Measures with `wssd bench`: idle RSS per
# proxied connection, echo msgs/s (64 B text), echo MB/s (16 KiB binary),
# connects/s (full handshakes, each one also opening an upstream connection).
# Writes bench/results/proxy-latest.md and proxy-latest.json. See bench/README.md.
#
# Usage: bench/proxy.sh [--quick] [--no-build]
# Env:   BENCH_SECS (default 10; --quick: 3), BENCH_IDLE_CONNS (2000),
#        BENCH_HOLD (idle hold seconds, default 3; --quick: 1),
#        BENCH_PORT_BASE (default 18450: BASE wssd, BASE+1 nginx, BASE+2 caddy,
#        BASE+3 backend), BENCH_KEEP=1 keeps the temporary folder (configs, logs).
set -euo pipefail
# Helpers shared with bench/run.sh and bench/fanout.sh; bench/proxy_report.py writes the report.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for arg in "$@"; do bench_arg "$arg"; done

timing_settings 2000
port_base=${BENCH_PORT_BASE:-18450}
[[ $port_base =~ ^[1-9][0-9]*$ ]] && ((port_base + 3 <= 65535)) || die "BENCH_PORT_BASE must be a port number (<= 65532), not '$port_base'"
wssd_port=$port_base
nginx_port=$((port_base + 1))
caddy_port=$((port_base + 2))
backend_port=$((port_base + 3))

# Settings must come from this script only: drop any WSSD_* variable (this
# also keeps WSSD_BENCH_ALLOW_REMOTE off: loopback only), and Caddy's own.
drop_env '^(WSSD_|CADDY_)'

# ---------------------------------------------------------------- tools
command -v python3 >/dev/null || die "python3 is needed to read the results"
command -v taskset >/dev/null || die "taskset (util-linux) is needed to pin processes to cores"

ensure_pkg nginx
ensure_pkg caddy
nginx_bin=$(find_bin nginx)
caddy_bin=$(find_bin caddy)

# ---------------------------------------------------------------- build
build_wssd --release

# ---------------------------------------------------------------- limits, cores
raise_fd_limit
fit_idle_conns "proxied idle connections"
plan_cores "servers and client"
ports_free "$wssd_port" "$nginx_port" "$caddy_port" "$backend_port"

# ---------------------------------------------------------------- processes we own
own_tmp wssd-proxy-bench
cd "$tmp" # no stray ./wssd.toml, .env or Caddyfile is read by the servers
mkdir -p state nginx/tmp runs caddy/home caddy/data caddy/config

make_cert

# One tokio worker thread for servers confined to one core, like nginx's one worker.
server_limits=(--max-connections 1000000 --max-connections-per-ip 1000000 --log-level warn --state-dir "$tmp/state")

# The backend: one plain ws:// echo server behind all three front ends. It is
# restarted (same command, same port) before each front end's idle run, so that
# each idle run sees a fresh backend, as it sees a fresh front end.
stop_backend() { # SIGTERM, up to 10 s, SIGKILL; drops it from pids
    local pid=$backend_pid keep=() p
    stop_tenths=100 stop_pids "$pid"
    for p in "${pids[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}
say "backend: wssd --tls off (ws://127.0.0.1:$backend_port, core ${server_cpus:-any})"
start_backend "$tmp/backend.log"

servers=()

say "wssd proxy (wss://127.0.0.1:$wssd_port -> ws://127.0.0.1:$backend_port, core ${server_cpus:-any})"
TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$wssd" --listen "127.0.0.1:$wssd_port" --tls files \
    --cert "$tmp/cert.pem" --key "$tmp/key.pem" --admin off \
    --route "/ws/echo=proxy:ws://127.0.0.1:$backend_port" \
    "${server_limits[@]}" >"$tmp/wssd.log" 2>&1 &
wssd_pid=$!
pids+=("$wssd_pid")
wait_port "$wssd_port" "$wssd_pid" "wssd proxy" "$tmp/wssd.log"
front_pids_wssd=$wssd_pid
servers+=(wssd)

nginx_version="not installed"
if [[ -n $nginx_bin ]]; then
    nginx_version=$("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //')
    start_nginx "$tmp/nginx/error.log"
    front_pids_nginx="$nginx_pid,$nginx_worker"
    servers+=(nginx)
fi

caddy_version="not installed"
if [[ -n $caddy_bin ]]; then
    caddy_version=$("$caddy_bin" version 2>/dev/null | head -n 1 || echo '?')
    start_caddy "	reverse_proxy 127.0.0.1:$backend_port"
    front_pids_caddy=$caddy_pid
    servers+=(caddy)
fi

# ---------------------------------------------------------------- runs
failures=0
commands_file="$tmp/commands.txt"
: >"$commands_file"

# rss_kib PID...: summed VmRSS.
rss_kib() { proc_status VmRSS "$@"; }

# fd_count PID...: summed open file descriptors.
fd_count() {
    local total=0 pid n
    for pid in "$@"; do
        n=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        total=$((total + n))
    done
    echo "$total"
}

# thread_count PID...: summed thread count.
thread_count() { proc_status Threads "$@"; }

front_pids() { # front_pids SERVER: comma-separated PIDs of its TLS-terminating process(es)
    case $1 in
        wssd) echo "$front_pids_wssd" ;;
        nginx) echo "$front_pids_nginx" ;;
        caddy) echo "$front_pids_caddy" ;;
    esac
}

# wait_settled SERVER: after a run, waits (at most 15 s) until the front's and
# the backend's open file descriptors stop falling, so every proxied
# connection of the run is gone before the next run starts (stable for 1 s).
wait_settled() {
    local fronts last="" now i same=0
    IFS=, read -r -a fronts <<<"$(front_pids "$1")"
    for i in $(seq 60); do
        now="$(fd_count "${fronts[@]}") $(fd_count "$backend_pid")"
        if [[ $now == "$last" ]]; then
            same=$((same + 1))
            ((same >= 4)) && return 0
        else
            same=0
        fi
        last=$now
        sleep 0.25
    done
}

# bench NAME SERVER MODE URL ARGS...: runs one `wssd bench`, keeps its output,
# its final JSON line, the CPU time it caused on the front and the backend,
# and the state (RSS, fds, threads) of both before and after.
bench() {
    local server=$2 fronts front_before backend_before state_before front_ticks backend_ticks front_sys_before front_sys_ticks
    bench_start "$@"
    IFS=, read -r -a fronts <<<"$(front_pids "$server")"
    state_before="rss_front_before $(rss_kib "${fronts[@]}")
rss_backend_before $(rss_kib "$backend_pid")
fds_front_before $(fd_count "${fronts[@]}")
fds_backend_before $(fd_count "$backend_pid")
threads_front_before $(thread_count "${fronts[@]}")"
    front_before=$(cpu_ticks "${fronts[@]}")
    backend_before=$(cpu_ticks "$backend_pid")
    front_sys_before=$(CPU_FIELDS='$13' cpu_ticks "${fronts[@]}")
    bench_exec
    front_ticks=$(($(cpu_ticks "${fronts[@]}") - front_before))
    backend_ticks=$(($(cpu_ticks "$backend_pid") - backend_before))
    front_sys_ticks=$(($(CPU_FIELDS='$13' cpu_ticks "${fronts[@]}") - front_sys_before))
    wait_settled "$server"
    {
        echo "$bench_machine"
        echo "front $front_ticks"
        echo "backend $backend_ticks"
        echo "front_sys $front_sys_ticks"
        echo "$state_before"
        # After the client closed everything and the fds stopped falling.
        echo "rss_front_after $(rss_kib "${fronts[@]}")"
        echo "rss_backend_after $(rss_kib "$backend_pid")"
        echo "fds_front_after $(fd_count "${fronts[@]}")"
        echo "fds_backend_after $(fd_count "$backend_pid")"
        echo "threads_front_after $(thread_count "${fronts[@]}")"
    } >"$bench_out.cpu"
    bench_show
}

url_of() { # url_of SERVER
    case $1 in
        wssd) echo "wss://127.0.0.1:$wssd_port/ws/echo" ;;
        nginx) echo "wss://127.0.0.1:$nginx_port/ws/echo" ;;
        caddy) echo "wss://127.0.0.1:$caddy_port/ws/echo" ;;
    esac
}
each() { # each NAME MODE ARGS... (every front end, back to back)
    local name=$1 mode=$2 server
    shift 2
    for server in "${servers[@]}"; do
        bench "$name" "$server" "$mode" "$(url_of "$server")" "$@"
    done
}

# Idle first, on fresh front processes (and a fresh backend each time): memory
# freed by earlier runs would otherwise be reused and make the per-connection
# growth look smaller. The backend PID goes last in --pid so the report can
# tell its growth apart.
first=1
for server in "${servers[@]}"; do
    if [[ $first == 0 ]]; then
        say "restarting the backend (fresh process for $server's idle run)"
        stop_backend
        start_backend
    fi
    first=0
    bench idle "$server" idle "$(url_of "$server")" --conns "$idle_conns" --hold "$hold" \
        --pid "$(front_pids "$server"),$backend_pid"
done
each echo64 echo --conns 100 --size 64 --secs "$secs"
each echo64x8 echo --conns 100 --size 64 --inflight 8 --secs "$secs"
each echo16k echo --conns 10 --size 16384 --binary --secs "$secs"
each connect connect --workers 16 --secs "$secs"

# ---------------------------------------------------------------- report
mkdir -p "$results_dir"
{
    machine_facts
    echo "wssd_commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src 2>/dev/null || echo ' (with uncommitted changes in src/)')"
    echo "wssd_binary=built $(date -u -r "$wssd" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$wssd" | cut -c1-16)"
    echo "nginx=$nginx_version"
    echo "caddy=$caddy_version"
    run_settings
    echo "servers=${servers[*]}"
    echo "quick=$quick"
} >"$tmp/machine.txt"
if [[ -f $tmp/nginx/nginx.conf ]]; then
    sed "s#$tmp#\$TMP#g" "$tmp/nginx/nginx.conf" >"$tmp/nginx.conf.txt"
fi
if [[ -f $tmp/caddy/Caddyfile ]]; then
    sed "s#$tmp#\$TMP#g" "$tmp/caddy/Caddyfile" >"$tmp/Caddyfile.txt"
fi
# Warnings and errors the servers logged during the runs (the servers log at warn).
for log in wssd.log backend.log nginx/error.log caddy.log; do
    [[ -f $tmp/$log ]] || continue
    sed "s#$tmp#\$TMP#g" "$tmp/$log" >"$tmp/logs.${log//\//_}.txt"
done

python3 "$root/bench/proxy_report.py" "$tmp" "$results_dir"
say "wrote $results_dir/proxy-latest.md and $results_dir/proxy-latest.json"
cat "$results_dir/proxy-latest.md"
if ((failures > 0)); then
    die "$failures bench run(s) failed; their rows read n/a (rerun with BENCH_KEEP=1 to keep the logs)"
fi
