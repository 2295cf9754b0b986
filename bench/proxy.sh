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

die() { echo "bench/proxy.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

quick=0
build=1
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --no-build) build=0 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $arg (try --help)" ;;
    esac
done

if [[ $quick == 1 ]]; then
    secs=${BENCH_SECS:-3}
    hold=${BENCH_HOLD:-1}
else
    secs=${BENCH_SECS:-10}
    hold=${BENCH_HOLD:-3}
fi
idle_conns=${BENCH_IDLE_CONNS:-2000}
is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
if ! is_number "$secs" || [[ $secs =~ ^0+([.]0+)?$ ]]; then
    die "BENCH_SECS must be a positive number of seconds, not '$secs'"
fi
is_number "$hold" || die "BENCH_HOLD must be a number of seconds, not '$hold'"
[[ $idle_conns =~ ^[1-9][0-9]*$ ]] || die "BENCH_IDLE_CONNS must be a positive whole number, not '$idle_conns'"
port_base=${BENCH_PORT_BASE:-18450}
[[ $port_base =~ ^[1-9][0-9]*$ ]] && ((port_base + 3 <= 65535)) || die "BENCH_PORT_BASE must be a port number (<= 65532), not '$port_base'"
wssd_port=$port_base
nginx_port=$((port_base + 1))
caddy_port=$((port_base + 2))
backend_port=$((port_base + 3))

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wssd="$root/target/release/wssd"
results_dir="$root/bench/results"

# Settings must come from this script only: drop any WSSD_* variable (this
# also keeps WSSD_BENCH_ALLOW_REMOTE off: loopback only), and Caddy's own.
while read -r name; do unset "$name"; done < <(compgen -e | grep -E '^(WSSD_|CADDY_)' || true)

# ---------------------------------------------------------------- tools
command -v python3 >/dev/null || die "python3 is needed to read the results"
command -v taskset >/dev/null || die "taskset (util-linux) is needed to pin processes to cores"

# find_bin NAME: the program's path, or nothing.
find_bin() {
    local bin
    bin=$(command -v "$1" || true)
    [[ -z $bin && -x /usr/sbin/$1 ]] && bin=/usr/sbin/$1
    [[ -z $bin && -x /usr/bin/$1 ]] && bin=/usr/bin/$1
    echo "$bin"
}

# ensure_pkg NAME: installs Debian package NAME (providing program NAME) when
# the program is missing and we are root; never starts the package's service.
ensure_pkg() {
    local name=$1
    [[ -n $(find_bin "$name") ]] && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing $name (Debian package)"
        if ! apt-cache policy "$name" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            apt-get update -qq
        fi
        # Keep the package from starting its own server (nginx on :80, caddy on :80).
        local made_policy=0
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            made_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$name" >/dev/null || true
        [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
    fi
    if [[ -z $(find_bin "$name") ]]; then
        echo "NOTICE: $name is not installed and could not be installed (needs root and apt-get);" >&2
        echo "NOTICE: its column will read n/a." >&2
    fi
}
ensure_pkg nginx
ensure_pkg caddy
nginx_bin=$(find_bin nginx)
caddy_bin=$(find_bin caddy)

# ---------------------------------------------------------------- build
if [[ $build == 1 ]]; then
    say "cargo build --release"
    (cd "$root" && cargo build --release)
fi
[[ -x $wssd ]] || die "$wssd not found (run without --no-build)"

# ---------------------------------------------------------------- limits, cores
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit=$(ulimit -n)
if [[ $fd_limit != unlimited ]] && ((fd_limit < 2 * idle_conns + 1024)); then
    echo "NOTICE: open-file limit $fd_limit is low for $idle_conns proxied idle connections" \
        "(needs about $((2 * idle_conns + 1024))); lowering BENCH_IDLE_CONNS to $(((fd_limit - 1024) / 2))" >&2
    idle_conns=$(((fd_limit - 1024) / 2))
    ((idle_conns > 0)) || die "open-file limit $fd_limit is too low"
fi

ncpu=$(nproc)
if ((ncpu >= 2)); then
    server_cpus=0
    client_cpus="1-$((ncpu - 1))"
    ((ncpu == 2)) && client_cpus=1
    client_threads=$((ncpu - 1))
    pin_server=(taskset -c "$server_cpus")
    pin_client=(taskset -c "$client_cpus")
else
    client_threads=1
    pin_server=()
    pin_client=()
    echo "NOTICE: one CPU: servers and client share it, no pinning" >&2
fi

for port in "$wssd_port" "$nginx_port" "$caddy_port" "$backend_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is in use; set BENCH_PORT_BASE to a free range"
    fi
done

# ---------------------------------------------------------------- processes we own
tmp=$(mktemp -d /tmp/wssd-proxy-bench.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # wait_port PORT PID NAME LOG
    local i
    for i in $(seq 100); do
        kill -0 "$2" 2>/dev/null || { tail -n 20 "$4" >&2 2>/dev/null; die "$3 exited during start-up (log: $4)"; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$3 did not listen on 127.0.0.1:$1 within 10 s"
}

cd "$tmp" # no stray ./wssd.toml, .env or Caddyfile is read by the servers
mkdir -p state nginx/tmp runs caddy/home caddy/data caddy/config

say "certificate"
"$wssd" cert generate --hostname localhost --hostname 127.0.0.1 \
    --out-cert "$tmp/cert.pem" --out-key "$tmp/key.pem" >/dev/null

# One tokio worker thread for servers confined to one core, like nginx's one worker.
server_limits=(--max-connections 1000000 --max-connections-per-ip 1000000 --log-level warn --state-dir "$tmp/state")

# The backend: one plain ws:// echo server behind all three front ends. It is
# restarted (same command, same port) before each front end's idle run, so that
# each idle run sees a fresh backend, as it sees a fresh front end.
start_backend() {
    TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$wssd" --tls off --http "127.0.0.1:$backend_port" \
        --admin off --route /ws/echo=echo "${server_limits[@]}" >>"$tmp/backend.log" 2>&1 &
    backend_pid=$!
    pids+=("$backend_pid")
    wait_port "$backend_port" "$backend_pid" "wssd backend" "$tmp/backend.log"
}
stop_backend() {
    local pid=$backend_pid keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${pids[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}
say "backend: wssd --tls off (ws://127.0.0.1:$backend_port, core ${server_cpus:-any})"
start_backend

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
    worker_connections=$((2 * idle_conns + 1024))
    cat >"$tmp/nginx/nginx.conf" <<EOF
# Generated by bench/proxy.sh: TLS termination in front of a ws:// echo backend.
worker_processes 1;
worker_rlimit_nofile $((worker_connections + 64));
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;

events {
    worker_connections $worker_connections;
}

http {
    access_log off;
    client_body_temp_path $tmp/nginx/tmp/body;
    proxy_temp_path $tmp/nginx/tmp/proxy;
    fastcgi_temp_path $tmp/nginx/tmp/fastcgi;
    uwsgi_temp_path $tmp/nginx/tmp/uwsgi;
    scgi_temp_path $tmp/nginx/tmp/scgi;

    server {
        listen 127.0.0.1:$nginx_port ssl;
        ssl_certificate $tmp/cert.pem;
        ssl_certificate_key $tmp/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;

        location /ws/echo {
            proxy_pass http://127.0.0.1:$backend_port;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host \$host;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
EOF
    "$nginx_bin" -t -q -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" \
        || die "nginx rejected the generated configuration ($tmp/nginx/nginx.conf)"
    say "nginx (wss://127.0.0.1:$nginx_port, worker_processes 1, core ${server_cpus:-any})"
    "${pin_server[@]}" "$nginx_bin" -p "$tmp/nginx" -e "$tmp/nginx/error.log" \
        -c "$tmp/nginx/nginx.conf" -g 'daemon off;' >"$tmp/nginx.log" 2>&1 &
    nginx_pid=$!
    pids+=("$nginx_pid")
    wait_port "$nginx_port" "$nginx_pid" nginx "$tmp/nginx/error.log"
    nginx_worker=""
    for _ in $(seq 50); do
        nginx_worker=$(ps -o pid= --ppid "$nginx_pid" | tr -d ' ' | head -n 1)
        [[ -n $nginx_worker ]] && break
        sleep 0.1
    done
    [[ -n $nginx_worker ]] || die "no nginx worker process under master $nginx_pid"
    front_pids_nginx="$nginx_pid,$nginx_worker"
    servers+=(nginx)
fi

caddy_version="not installed"
if [[ -n $caddy_bin ]]; then
    caddy_version=$("$caddy_bin" version 2>/dev/null | head -n 1 || echo '?')
    # Everything Caddy might write (its data and config folders, the local CA
    # it never needs here) goes under $tmp/caddy; no admin endpoint, no ACME,
    # no OCSP fetching, nothing added to trust stores.
    cat >"$tmp/caddy/Caddyfile" <<EOF
# Generated by bench/proxy.sh: TLS termination in front of a ws:// echo backend.
{
	admin off
	auto_https off
	ocsp_stapling off
	skip_install_trust
	storage file_system $tmp/caddy/data
	grace_period 2s
	log {
		output stderr
		level WARN
	}
}

https://127.0.0.1:$caddy_port {
	bind 127.0.0.1
	tls $tmp/cert.pem $tmp/key.pem
	reverse_proxy 127.0.0.1:$backend_port
}
EOF
    caddy_env=(env HOME="$tmp/caddy/home" XDG_DATA_HOME="$tmp/caddy/data" XDG_CONFIG_HOME="$tmp/caddy/config"
        GOMAXPROCS=1)
    "${caddy_env[@]}" "$caddy_bin" validate --config "$tmp/caddy/Caddyfile" --adapter caddyfile \
        >"$tmp/caddy-validate.log" 2>&1 \
        || { cat "$tmp/caddy-validate.log" >&2; die "caddy rejected the generated Caddyfile ($tmp/caddy/Caddyfile)"; }
    say "caddy (wss://127.0.0.1:$caddy_port, GOMAXPROCS=1, core ${server_cpus:-any})"
    "${caddy_env[@]}" "${pin_server[@]}" "$caddy_bin" run --config "$tmp/caddy/Caddyfile" \
        --adapter caddyfile >"$tmp/caddy.log" 2>&1 &
    caddy_pid=$!
    pids+=("$caddy_pid")
    wait_port "$caddy_port" "$caddy_pid" caddy "$tmp/caddy.log"
    front_pids_caddy=$caddy_pid
    servers+=(caddy)
fi

# ---------------------------------------------------------------- runs
failures=0
commands_file="$tmp/commands.txt"
: >"$commands_file"

# cpu_ticks PID...: user+system clock ticks these processes have used so far.
cpu_ticks() {
    local total=0 pid ticks
    for pid in "$@"; do
        ticks=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')
        total=$((total + ${ticks:-0}))
    done
    echo "$total"
}

# rss_kib PID...: summed VmRSS.
rss_kib() {
    local total=0 pid kib
    for pid in "$@"; do
        kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}

# fd_count PID...: summed open file descriptors.
fd_count() {
    local total=0 pid n
    for pid in "$@"; do
        n=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        total=$((total + n))
    done
    echo "$total"
}

# threads PID...: summed thread count.
thread_count() {
    local total=0 pid n
    for pid in "$@"; do
        n=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

# cpu_stat: "BUSY TOTAL" clock ticks of all CPUs together, from /proc/stat.
cpu_stat() {
    awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6; exit}' /proc/stat
}

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
    local name=$1 server=$2 mode=$3 url=$4
    shift 4
    local out="$tmp/runs/$name.$server"
    local cmd=(env TOKIO_WORKER_THREADS="$client_threads" "${pin_client[@]}" "$wssd" bench "$mode" "$url" --ca "$tmp/cert.pem" "$@")
    say "$name / $server: wssd bench $mode $url $*"
    echo "[$name, $server] ${cmd[*]}" | sed "s#$tmp#\$TMP#g; s#$root/##g" >>"$commands_file"
    local fronts
    IFS=, read -r -a fronts <<<"$(front_pids "$server")"
    local front_before backend_before started ended
    local state_before="rss_front_before $(rss_kib "${fronts[@]}")
rss_backend_before $(rss_kib "$backend_pid")
fds_front_before $(fd_count "${fronts[@]}")
fds_backend_before $(fd_count "$backend_pid")
threads_front_before $(thread_count "${fronts[@]}")"
    front_before=$(cpu_ticks "${fronts[@]}")
    backend_before=$(cpu_ticks "$backend_pid")
    local stat_before stat_after
    stat_before=$(cpu_stat)
    started=$(date +%s.%N)
    local limit status=0
    limit=$(awk -v s="$secs" -v h="$hold" 'BEGIN {printf "%d", s + h + 180}')
    timeout "$limit" "${cmd[@]}" >"$out.out" 2>"$out.err" || status=$?
    if [[ $status == 0 ]]; then
        tail -n 1 "$out.out" >"$out.json"
    else
        echo "   failed (exit $status): $(tail -n 3 "$out.err" | tr '\n' ' ')" >&2
        echo '{"failed":true}' >"$out.json"
        failures=$((failures + 1))
    fi
    ended=$(date +%s.%N)
    stat_after=$(cpu_stat)
    local front_ticks backend_ticks
    front_ticks=$(($(cpu_ticks "${fronts[@]}") - front_before))
    backend_ticks=$(($(cpu_ticks "$backend_pid") - backend_before))
    wait_settled "$server"
    {
        # Whole machine, all cores: used to spot other load during the run.
        echo "machine_busy $(($(cut -d' ' -f1 <<<"$stat_after") - $(cut -d' ' -f1 <<<"$stat_before")))"
        echo "machine_total $(($(cut -d' ' -f2 <<<"$stat_after") - $(cut -d' ' -f2 <<<"$stat_before")))"
        echo "wall $(awk -v a="$started" -v b="$ended" 'BEGIN {print b - a}')"
        echo "clk_tck $(getconf CLK_TCK)"
        echo "front $front_ticks"
        echo "backend $backend_ticks"
        echo "$state_before"
        # After the client closed everything and the fds stopped falling.
        echo "rss_front_after $(rss_kib "${fronts[@]}")"
        echo "rss_backend_after $(rss_kib "$backend_pid")"
        echo "fds_front_after $(fd_count "${fronts[@]}")"
        echo "fds_backend_after $(fd_count "$backend_pid")"
        echo "threads_front_after $(thread_count "${fronts[@]}")"
    } >"$out.cpu"
    sed 's/^/   /' "$out.out" | head -n -1 >&2
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
each echo16k echo --conns 10 --size 16384 --binary --secs "$secs"
each connect connect --workers 16 --secs "$secs"

# ---------------------------------------------------------------- report
mkdir -p "$results_dir"
{
    echo "nproc=$ncpu"
    echo "kernel=$(uname -sr)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "wssd=$("$wssd" --version 2>/dev/null || echo '?')"
    echo "wssd_commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src 2>/dev/null || echo ' (with uncommitted changes in src/)')"
    echo "wssd_binary=built $(date -u -r "$wssd" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$wssd" | cut -c1-16)"
    echo "nginx=$nginx_version"
    echo "caddy=$caddy_version"
    echo "openssl=$(openssl version 2>/dev/null || echo '?')"
    echo "secs=$secs"
    echo "hold=$hold"
    echo "idle_conns=$idle_conns"
    echo "server_cpus=${server_cpus:-any}"
    echo "client_cpus=${client_cpus:-any}"
    echo "client_threads=$client_threads"
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
