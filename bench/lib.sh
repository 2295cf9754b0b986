# bench/lib.sh: shell helpers shared by bench/run.sh, bench/proxy.sh,
# bench/fanout.sh and bench/floor.sh; sourced by them (after `set -euo
# pipefail`), not run.
#
# It owns: messages, --help and the common arguments; the BENCH_SECS /
# BENCH_HOLD / BENCH_IDLE_CONNS checks; the repository paths (root, wssd,
# results_dir); finding and installing Debian packages; building wssd and the
# naive echo; the open-file limit and the split of cores between servers and
# client; ports;
# the temporary folder and the processes a script owns (stopped by PID when it
# exits); the ws:// echo backend and nginx in front of it; CPU, memory and
# thread figures from /proc; and one measured `wssd bench` run.
#
# Functions read and set the globals named in their comments.

me="bench/${0##*/}"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wssd="$root/target/release/wssd"
results_dir="$root/bench/results"

die() { echo "$me: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

# usage: the script's header comment (after the #! line), without the "# ".
usage() { awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; }

# bench_arg ARG: --quick sets quick=1, --no-build build=0, -h/--help prints
# the usage and exits; anything else is an error.
quick=0
build=1
bench_arg() {
    case "$1" in
        --quick) quick=1 ;;
        --no-build) build=0 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
}

# timing_settings DEFAULT_IDLE_CONNS: sets secs (BENCH_SECS, default 10, 3
# with --quick), hold (BENCH_HOLD, default 3, 1 with --quick) and idle_conns
# (BENCH_IDLE_CONNS); dies on values that are not numbers.
timing_settings() {
    if [[ $quick == 1 ]]; then
        secs=${BENCH_SECS:-3}
        hold=${BENCH_HOLD:-1}
    else
        secs=${BENCH_SECS:-10}
        hold=${BENCH_HOLD:-3}
    fi
    idle_conns=${BENCH_IDLE_CONNS:-$1}
    if ! is_number "$secs" || [[ $secs =~ ^0+([.]0+)?$ ]]; then
        die "BENCH_SECS must be a positive number of seconds, not '$secs'"
    fi
    is_number "$hold" || die "BENCH_HOLD must be a number of seconds, not '$hold'"
    [[ $idle_conns =~ ^[1-9][0-9]*$ ]] || die "BENCH_IDLE_CONNS must be a positive whole number, not '$idle_conns'"
}
is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }

# drop_env REGEX: unsets the environment variables whose names match REGEX
# (grep -E), so that settings come from the script only.
drop_env() {
    while read -r name; do unset "$name"; done < <(compgen -e | grep -E "$1" || true)
}

# ---------------------------------------------------------------- tools

# find_bin NAME: the program's path, or nothing.
find_bin() {
    local bin
    bin=$(command -v "$1" || true)
    [[ -z $bin && -x /usr/sbin/$1 ]] && bin=/usr/sbin/$1
    [[ -z $bin && -x /usr/bin/$1 ]] && bin=/usr/bin/$1
    echo "$bin"
}

# ensure_pkg NAME [THEN]: installs Debian package NAME (providing program NAME)
# when the program is missing and we are root; never starts the package's
# service. When it is still missing, says so and THEN (default: "its column
# will read n/a.").
ensure_pkg() {
    local name=$1 then=${2:-its column will read n/a.}
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
        echo "NOTICE: $then" >&2
    fi
}

# build_wssd CARGO_ARGS...: `cargo build CARGO_ARGS` in the repository unless
# --no-build; dies when $wssd is not there afterwards.
build_wssd() {
    if [[ $build == 1 ]]; then
        say "cargo build $*"
        (cd "$root" && cargo build "$@")
    fi
    [[ -x $wssd ]] || die "$wssd not found (run without --no-build)"
}

# ---------------------------------------------------------------- limits, cores

# build_naive: builds bench/naive-echo into target/naive-echo (unless
# --no-build) and checks it is there (naive); sets server_wssd, the wssd the
# runs measure (BENCH_SERVER_BIN, or target/release/wssd).
build_naive() {
    if [[ $build == 1 ]]; then
        say "cargo build --release (bench/naive-echo, into target/naive-echo)"
        CARGO_TARGET_DIR="$root/target/naive-echo" cargo build --release --quiet \
            --manifest-path "$root/bench/naive-echo/Cargo.toml"
    fi
    [[ -x $naive ]] || die "$naive not found (run without --no-build)"
    server_wssd=${BENCH_SERVER_BIN:-$wssd}
    [[ -x $server_wssd ]] || die "BENCH_SERVER_BIN=$server_wssd is not an executable"
}

# raise_fd_limit: raises the open-file limit to the hard limit; sets fd_limit.
raise_fd_limit() {
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    fd_limit=$(ulimit -n)
}

# fit_idle_conns WHAT: lowers idle_conns (with a notice naming them WHAT) when
# fd_limit cannot hold two descriptors per idle connection plus 1024.
fit_idle_conns() {
    if [[ $fd_limit != unlimited ]] && ((fd_limit < 2 * idle_conns + 1024)); then
        echo "NOTICE: open-file limit $fd_limit is low for $idle_conns $1" \
            "(needs about $((2 * idle_conns + 1024))); lowering BENCH_IDLE_CONNS to $(((fd_limit - 1024) / 2))" >&2
        idle_conns=$(((fd_limit - 1024) / 2))
        ((idle_conns > 0)) || die "open-file limit $fd_limit is too low"
    fi
}

# plan_cores WHO: with 2 CPUs or more, core 0 for the servers and the rest for
# the client: sets ncpu, server_cpus, client_cpus, client_threads and the
# pin_server / pin_client command prefixes (taskset). With one CPU, no pinning
# (a notice says WHO share it).
plan_cores() {
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
        echo "NOTICE: one CPU: $1 share it, no pinning" >&2
    fi
}

# ---------------------------------------------------------------- ports

# port_open PORT: true when 127.0.0.1:PORT accepts a connection.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ports_free PORT...: dies when one of them is in use on 127.0.0.1.
ports_free() {
    local port
    for port in "$@"; do
        if port_open "$port"; then
            die "port $port on 127.0.0.1 is in use; set BENCH_PORT_BASE to a free range"
        fi
    done
}

# await_port PORT PID [TENTHS]: 0 once 127.0.0.1:PORT accepts, 1 as soon as
# PID has exited, 2 when TENTHS tenths of a second (default 100) have passed.
await_port() {
    for _ in $(seq "${3:-100}"); do
        kill -0 "$2" 2>/dev/null || return 1
        port_open "$1" && return 0
        sleep 0.1
    done
    return 2
}

# wait_port PORT PID NAME [LOG]: await_port for 10 s, or dies: when PID exited,
# after showing the last 20 lines of LOG (without LOG: every $tmp/*.log).
wait_port() {
    local status=0
    await_port "$1" "$2" || status=$?
    case $status in
        0) return 0 ;;
        1)
            if [[ -n ${4:-} ]]; then
                tail -n 20 "$4" >&2 2>/dev/null
                die "$3 exited during start-up (log: $4)"
            fi
            cat "$tmp"/*.log >&2 2>/dev/null
            die "$3 exited during start-up"
            ;;
        *) die "$3 did not listen on 127.0.0.1:$1 within 10 s" ;;
    esac
}

# ---------------------------------------------------------------- processes we own

# own_tmp NAME: tmp=/tmp/NAME.XXXXXX, a fresh folder, and pids=(), the
# processes this script started; when the script exits (also on Ctrl-C or
# failure) every PID in pids is stopped and tmp removed (kept with BENCH_KEEP=1).
own_tmp() {
    tmp=$(mktemp -d "/tmp/$1.XXXXXX")
    pids=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}
cleanup() {
    stop_pids "${pids[@]}"
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}

# stop_pids PID...: SIGTERM to each, then for each up to stop_tenths tenths of
# a second (default 50) to exit before SIGKILL; reaps them.
stop_pids() {
    local pid
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        for _ in $(seq "${stop_tenths:-50}"); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# make_cert: $tmp/cert.pem and $tmp/key.pem, for localhost and 127.0.0.1.
make_cert() {
    say "certificate"
    "$wssd" cert generate --hostname localhost --hostname 127.0.0.1 \
        --out-cert "$tmp/cert.pem" --out-key "$tmp/key.pem" >/dev/null
}

# start_backend [LOG]: the plain ws:// echo backend, `wssd --tls off` on
# 127.0.0.1:$backend_port with server_limits, one tokio worker, pinned like
# the servers, appending to $tmp/backend.log; sets backend_pid (added to pids)
# and waits for its port (wait_port ... LOG).
start_backend() {
    TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$wssd" --tls off --http "127.0.0.1:$backend_port" \
        --admin off --route /ws/echo=echo "${server_limits[@]}" >>"$tmp/backend.log" 2>&1 &
    backend_pid=$!
    pids+=("$backend_pid")
    wait_port "$backend_port" "$backend_pid" "wssd backend" "$@"
}

# start_nginx [LOG]: nginx ($nginx_bin, worker_processes 1, pinned like the
# servers) terminating TLS with $tmp/cert.pem on 127.0.0.1:$nginx_port in front
# of ws://127.0.0.1:$backend_port, configured by $tmp/nginx/nginx.conf (written
# here, checked with nginx -t); sets nginx_pid (added to pids) and nginx_worker
# and waits for its port (wait_port ... LOG). Needs the folder $tmp/nginx/tmp.
# NGINX_LISTEN (extra listen flags, e.g. "http2") and NGINX_SERVER (extra
# lines of the server block, e.g. a root for files) adapt it to a script.
start_nginx() {
    local worker_connections=$((2 * ${idle_conns:-1000} + 1024))
    cat >"$tmp/nginx/nginx.conf" <<EOF
# Generated by $me: TLS termination in front of a ws:// echo backend.
worker_processes 1;
worker_rlimit_nofile $((worker_connections + 64));
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;

events {
    worker_connections $worker_connections;
}

http {
    access_log off;
    types { text/html html; text/css css; application/javascript js; }
    client_body_temp_path $tmp/nginx/tmp/body;
    proxy_temp_path $tmp/nginx/tmp/proxy;
    fastcgi_temp_path $tmp/nginx/tmp/fastcgi;
    uwsgi_temp_path $tmp/nginx/tmp/uwsgi;
    scgi_temp_path $tmp/nginx/tmp/scgi;

    server {
        listen 127.0.0.1:$nginx_port ssl${NGINX_LISTEN:+ $NGINX_LISTEN};
        ssl_certificate $tmp/cert.pem;
        ssl_certificate_key $tmp/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
${NGINX_SERVER:-}

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
    wait_port "$nginx_port" "$nginx_pid" nginx "$@"
    nginx_worker=""
    for _ in $(seq 50); do
        nginx_worker=$(ps -o pid= --ppid "$nginx_pid" | tr -d ' ' | head -n 1)
        [[ -n $nginx_worker ]] && break
        sleep 0.1
    done
    [[ -n $nginx_worker ]] || die "no nginx worker process under master $nginx_pid"
}

# start_caddy SITE: Caddy ($caddy_bin, GOMAXPROCS=1, pinned like the servers)
# terminating TLS with $tmp/cert.pem on 127.0.0.1:$caddy_port, with the lines
# SITE inside its site block (e.g. "reverse_proxy 127.0.0.1:PORT"). Everything
# it might write (data and config folders, the local CA it never needs here)
# goes under $tmp/caddy; no admin endpoint, no ACME, no OCSP fetching, nothing
# added to trust stores. Checks the Caddyfile with `caddy validate`; sets
# caddy_pid (added to pids) and waits for its port.
start_caddy() {
    mkdir -p "$tmp/caddy"
    cat >"$tmp/caddy/Caddyfile" <<EOF
# Generated by $me.
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
$1
}
EOF
    local caddy_env=(env HOME="$tmp/caddy/home" XDG_DATA_HOME="$tmp/caddy/data"
        XDG_CONFIG_HOME="$tmp/caddy/config" GOMAXPROCS=1)
    "${caddy_env[@]}" "$caddy_bin" validate --config "$tmp/caddy/Caddyfile" --adapter caddyfile \
        >"$tmp/caddy-validate.log" 2>&1 \
        || { cat "$tmp/caddy-validate.log" >&2; die "caddy rejected the generated Caddyfile ($tmp/caddy/Caddyfile)"; }
    say "caddy (https://127.0.0.1:$caddy_port, GOMAXPROCS=1, core ${server_cpus:-any})"
    "${caddy_env[@]}" "${pin_server[@]}" "$caddy_bin" run --config "$tmp/caddy/Caddyfile" \
        --adapter caddyfile >"$tmp/caddy.log" 2>&1 &
    caddy_pid=$!
    pids+=("$caddy_pid")
    wait_port "$caddy_port" "$caddy_pid" caddy "$tmp/caddy.log"
}

# ---------------------------------------------------------------- /proc figures

# cpu_ticks PID...: user+system clock ticks these processes have used so far.
# CPU_FIELDS='$13' (system only) or '$12' (user only) picks one part.
cpu_ticks() {
    local total=0 pid ticks
    for pid in "$@"; do
        ticks=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk "{print ${CPU_FIELDS:-\$12 + \$13}}")
        total=$((total + ${ticks:-0}))
    done
    echo "$total"
}

# proc_status FIELD PID...: the number after "FIELD:" in /proc/PID/status
# (VmRSS, VmHWM in KiB; Threads), summed over the PIDs (0 for a gone one).
proc_status() {
    local field=$1 total=0 pid n
    shift
    for pid in "$@"; do
        n=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null)
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

# cpu_stat: "BUSY TOTAL" clock ticks of all CPUs together, from /proc/stat.
cpu_stat() {
    awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6; exit}' /proc/stat
}

# machine_facts: the nproc, kernel, cpu, mem, date and wssd lines of machine.txt.
machine_facts() {
    echo "nproc=$(nproc)"
    echo "kernel=$(uname -sr)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "wssd=$("$wssd" --version 2>/dev/null || echo '?')"
}

# run_settings: the openssl, secs, hold, idle_conns, server_cpus, client_cpus
# and client_threads lines of machine.txt (bench/run.sh, bench/proxy.sh).
run_settings() {
    echo "openssl=$(openssl version 2>/dev/null || echo '?')"
    echo "secs=$secs"
    echo "hold=$hold"
    echo "idle_conns=$idle_conns"
    echo "server_cpus=${server_cpus:-any}"
    echo "client_cpus=${client_cpus:-any}"
    echo "client_threads=$client_threads"
}

# ---------------------------------------------------------------- one `wssd bench` run
# A script's bench function: bench_start, its own "before" figures, bench_exec,
# then bench_out.cpu = bench_machine and its own lines, then bench_show.

# bench_start NAME SERVER MODE URL ARGS...: bench_cmd, the command (`wssd
# bench MODE URL --ca $tmp/cert.pem ARGS` on the client cores), and
# bench_out=$tmp/runs/NAME.SERVER, the prefix of its files; says the run and
# adds the command to $commands_file.
bench_start() {
    local name=$1 server=$2 mode=$3 url=$4
    shift 4
    bench_out="$tmp/runs/$name.$server"
    bench_cmd=(env TOKIO_WORKER_THREADS="$client_threads" "${pin_client[@]}" "$wssd" bench "$mode" "$url" --ca "$tmp/cert.pem" "$@")
    say "$name / $server: wssd bench $mode $url $*"
    echo "[$name, $server] ${bench_cmd[*]}" | sed "s#$tmp#\$TMP#g; s#$root/##g" >>"$commands_file"
}

# bench_exec: runs bench_cmd (bounded by timeout: secs + hold + 180 s) into
# bench_out.out and .err and its final JSON line into .json ({"failed":true}
# when it fails, counted in failures); sets bench_machine, the whole
# machine's CPU ticks (busy, total), the wall time and the clock tick rate as
# lines for the .cpu file.
bench_exec() {
    local stat_before stat_after started ended limit status=0
    stat_before=$(cpu_stat)
    started=$(date +%s.%N)
    limit=$(awk -v s="$secs" -v h="$hold" 'BEGIN {printf "%d", s + h + 180}')
    timeout "$limit" "${bench_cmd[@]}" >"$bench_out.out" 2>"$bench_out.err" || status=$?
    if [[ $status == 0 ]]; then
        tail -n 1 "$bench_out.out" >"$bench_out.json"
    else
        echo "   failed (exit $status): $(tail -n 3 "$bench_out.err" | tr '\n' ' ')" >&2
        echo '{"failed":true}' >"$bench_out.json"
        failures=$((failures + 1))
    fi
    ended=$(date +%s.%N)
    stat_after=$(cpu_stat)
    # Whole machine, all cores: used to spot other load during the run.
    bench_machine="machine_busy $(($(cut -d' ' -f1 <<<"$stat_after") - $(cut -d' ' -f1 <<<"$stat_before")))
machine_total $(($(cut -d' ' -f2 <<<"$stat_after") - $(cut -d' ' -f2 <<<"$stat_before")))
wall $(awk -v a="$started" -v b="$ended" 'BEGIN {print b - a}')
clk_tck $(getconf CLK_TCK)"
}

# bench_show: the run's output but its JSON line, indented, to stderr.
bench_show() {
    sed 's/^/   /' "$bench_out.out" | head -n -1 >&2
}
