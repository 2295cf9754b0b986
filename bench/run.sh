#!/usr/bin/env bash
# bench/run.sh: wssd against nginx at terminating wss:// on loopback, in one run.
#
#   (a) wssd serving wss:// with its echo route
#   (b) nginx terminating TLS (same certificate) in front of a plain ws:// echo
#       backend (wssd --tls off)
#
# Measures with `wssd bench`: idle RSS per connection, echo msgs/s (64 B text),
# echo MB/s (16 KiB binary), connects/s (full handshakes). Writes
# bench/results/latest.md and bench/results/latest.json. See bench/README.md.
#
# Usage: bench/run.sh [--quick] [--no-build]
# Env:   BENCH_SECS (default 10; --quick: 3), BENCH_IDLE_CONNS (5000),
#        BENCH_HOLD (idle hold seconds, default 3; --quick: 1),
#        BENCH_PORT_BASE (default 18440: uses BASE, BASE+1, BASE+2),
#        BENCH_KEEP=1 keeps the temporary folder (configs, logs).
set -euo pipefail

die() { echo "bench/run.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

quick=0
build=1
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --no-build) build=0 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
idle_conns=${BENCH_IDLE_CONNS:-5000}
is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
if ! is_number "$secs" || [[ $secs =~ ^0+([.]0+)?$ ]]; then
    die "BENCH_SECS must be a positive number of seconds, not '$secs'"
fi
is_number "$hold" || die "BENCH_HOLD must be a number of seconds, not '$hold'"
[[ $idle_conns =~ ^[1-9][0-9]*$ ]] || die "BENCH_IDLE_CONNS must be a positive whole number, not '$idle_conns'"
port_base=${BENCH_PORT_BASE:-18440}
wssd_port=$port_base
nginx_port=$((port_base + 1))
backend_port=$((port_base + 2))

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wssd="$root/target/release/wssd"
results_dir="$root/bench/results"

# Settings must come from this script only: drop any WSSD_* variable (this
# also keeps WSSD_BENCH_ALLOW_REMOTE off: loopback only).
while read -r name; do unset "$name"; done < <(compgen -e | grep '^WSSD_' || true)

# ---------------------------------------------------------------- tools
command -v python3 >/dev/null || die "python3 is needed to read the results"
command -v taskset >/dev/null || die "taskset (util-linux) is needed to pin processes to cores"

nginx_bin=$(command -v nginx || true)
[[ -z $nginx_bin && -x /usr/sbin/nginx ]] && nginx_bin=/usr/sbin/nginx
if [[ -z $nginx_bin ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing nginx (Debian package)"
        if ! apt-cache policy nginx 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            apt-get update -qq
        fi
        # Keep the package from starting its own nginx on port 80.
        made_policy=0
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            made_policy=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null || true
        [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
        nginx_bin=$(command -v nginx || true)
        [[ -z $nginx_bin && -x /usr/sbin/nginx ]] && nginx_bin=/usr/sbin/nginx
    fi
    if [[ -z $nginx_bin ]]; then
        echo "NOTICE: nginx is not installed and could not be installed (needs root and apt-get);" >&2
        echo "NOTICE: measuring wssd only, the nginx column will read n/a." >&2
    fi
fi

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
    echo "NOTICE: open-file limit $fd_limit is low for $idle_conns idle connections through nginx" \
        "(needs about $((2 * idle_conns + 1024))); lowering BENCH_IDLE_CONNS to $(((fd_limit - 1024) / 2))" >&2
    idle_conns=$(((fd_limit - 1024) / 2))
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
    echo "NOTICE: one CPU: server and client share it, no pinning" >&2
fi

for port in "$wssd_port" "$nginx_port" "$backend_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is in use; set BENCH_PORT_BASE to a free range"
    fi
done

# ---------------------------------------------------------------- processes we own
tmp=$(mktemp -d /tmp/wssd-bench.XXXXXX)
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

wait_port() { # wait_port PORT PID NAME
    local i
    for i in $(seq 100); do
        kill -0 "$2" 2>/dev/null || { cat "$tmp"/*.log >&2 2>/dev/null; die "$3 exited during start-up"; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$3 did not listen on 127.0.0.1:$1 within 10 s"
}

cd "$tmp" # no stray ./wssd.toml or .env is read by the servers
mkdir -p state nginx/tmp runs

say "certificate"
"$wssd" cert generate --hostname localhost --hostname 127.0.0.1 \
    --out-cert "$tmp/cert.pem" --out-key "$tmp/key.pem" >/dev/null

# One tokio worker thread for servers confined to one core, like nginx's one worker.
server_limits=(--max-connections 1000000 --max-connections-per-ip 1000000 --log-level warn --state-dir "$tmp/state")

say "wssd (wss://127.0.0.1:$wssd_port, core ${server_cpus:-any})"
TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$wssd" --listen "127.0.0.1:$wssd_port" --tls files \
    --cert "$tmp/cert.pem" --key "$tmp/key.pem" --admin off --route /ws/echo=echo \
    "${server_limits[@]}" >"$tmp/wssd.log" 2>&1 &
wssd_pid=$!
pids+=("$wssd_pid")
wait_port "$wssd_port" "$wssd_pid" wssd

have_nginx=0
if [[ -n $nginx_bin ]]; then
    say "backend: wssd --tls off (ws://127.0.0.1:$backend_port, core ${server_cpus:-any})"
    TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$wssd" --tls off --http "127.0.0.1:$backend_port" \
        --admin off --route /ws/echo=echo "${server_limits[@]}" >"$tmp/backend.log" 2>&1 &
    backend_pid=$!
    pids+=("$backend_pid")
    wait_port "$backend_port" "$backend_pid" "wssd backend"

    worker_connections=$((2 * idle_conns + 1024))
    cat >"$tmp/nginx/nginx.conf" <<EOF
# Generated by bench/run.sh: TLS termination in front of a ws:// echo backend.
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
    wait_port "$nginx_port" "$nginx_pid" nginx
    nginx_worker=""
    for _ in $(seq 50); do
        nginx_worker=$(ps -o pid= --ppid "$nginx_pid" | tr -d ' ' | head -n 1)
        [[ -n $nginx_worker ]] && break
        sleep 0.1
    done
    [[ -n $nginx_worker ]] || die "no nginx worker process under master $nginx_pid"
    have_nginx=1
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

# cpu_stat: "BUSY TOTAL" clock ticks of all CPUs together, from /proc/stat.
cpu_stat() {
    awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6; exit}' /proc/stat
}

# Server-side process groups whose CPU time each run records.
server_groups() {
    case $1 in
        wssd) echo "wssd=$wssd_pid" ;;
        nginx) echo "nginx=$nginx_pid,$nginx_worker backend=$backend_pid" ;;
    esac
}

# bench NAME SERVER MODE URL ARGS...: runs one `wssd bench`, keeps its output,
# its final JSON line and the server-side CPU time it caused.
bench() {
    local name=$1 server=$2 mode=$3 url=$4
    shift 4
    local out="$tmp/runs/$name.$server"
    local cmd=(env TOKIO_WORKER_THREADS="$client_threads" "${pin_client[@]}" "$wssd" bench "$mode" "$url" --ca "$tmp/cert.pem" "$@")
    say "$name / $server: wssd bench $mode $url $*"
    echo "[$name, $server] ${cmd[*]}" | sed "s#$tmp#\$TMP#g; s#$root/##g" >>"$commands_file"
    local groups group before=() i=0 started ended
    read -r -a groups <<<"$(server_groups "$server")"
    for group in "${groups[@]}"; do
        IFS=, read -r -a gpids <<<"${group#*=}"
        before+=("$(cpu_ticks "${gpids[@]}")")
    done
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
    {
        # Whole machine, all cores: used to spot other load during the run.
        echo "machine_busy $(($(cut -d' ' -f1 <<<"$stat_after") - $(cut -d' ' -f1 <<<"$stat_before")))"
        echo "machine_total $(($(cut -d' ' -f2 <<<"$stat_after") - $(cut -d' ' -f2 <<<"$stat_before")))"
        echo "wall $(awk -v a="$started" -v b="$ended" 'BEGIN {print b - a}')"
        echo "clk_tck $(getconf CLK_TCK)"
        for group in "${groups[@]}"; do
            IFS=, read -r -a gpids <<<"${group#*=}"
            echo "${group%%=*} $(($(cpu_ticks "${gpids[@]}") - before[i]))"
            i=$((i + 1))
        done
    } >"$out.cpu"
    sed 's/^/   /' "$out.out" | head -n -1 >&2
}

wssd_url="wss://127.0.0.1:$wssd_port/ws/echo"
nginx_url="wss://127.0.0.1:$nginx_port/ws/echo"
each() { # each NAME MODE ARGS... (both servers, back to back)
    local name=$1 mode=$2
    shift 2
    bench "$name" wssd "$mode" "$wssd_url" "$@"
    if [[ $have_nginx == 1 ]]; then
        bench "$name" nginx "$mode" "$nginx_url" "$@"
    fi
}

# Idle first, on fresh processes: memory freed by earlier runs would otherwise
# be reused and make the per-connection growth look smaller.
bench idle wssd idle "$wssd_url" --conns "$idle_conns" --hold "$hold" --pid "$wssd_pid"
if [[ $have_nginx == 1 ]]; then
    bench idle nginx idle "$nginx_url" --conns "$idle_conns" --hold "$hold" \
        --pid "$nginx_pid,$nginx_worker,$backend_pid"
fi
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
    echo "nginx=$([[ -n $nginx_bin ]] && "$nginx_bin" -v 2>&1 | sed 's/^nginx version: //' || echo 'not installed')"
    echo "openssl=$(openssl version 2>/dev/null || echo '?')"
    echo "secs=$secs"
    echo "hold=$hold"
    echo "idle_conns=$idle_conns"
    echo "server_cpus=${server_cpus:-any}"
    echo "client_cpus=${client_cpus:-any}"
    echo "client_threads=$client_threads"
    echo "have_nginx=$have_nginx"
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
