#!/usr/bin/env bash
# bench/fanout.sh: broadcast fan-out over wss:// on loopback, measured with
# `wssd bench fanout`:
#
#   single  one wssd (self-signed TLS, --route /ws/news=broadcast); the
#           subscribers and the publisher all connect to it
#   redis   two wssd instances sharing a redis-server started here
#           (--broker redis://127.0.0.1:PORT); subscribers on A, publisher on B
#
# for each SUBSCRIBERS:RATE pair in BENCH_RUNS (default: 1,000 subscribers at
# 20, 100 and 200 msg/s, 10,000 at 2, 10 and 20 msg/s; 64-byte binary messages
# for BENCH_SECS seconds each). The lowest rate of each size is the baseline
# (one burst of deliveries at a time, no queueing); the others offer 100,000
# and 200,000 deliveries/s. At 200,000 paced deliveries/s the 2-core
# development machine is close to full (server about 1 core, bench client
# 0.75): compare latencies with the baseline. Every run gets freshly started servers, so the peak RSS (VmHWM
# from /proc) is that run's. Writes
# bench/results/fanout-<date>.md (table: p50/p99 latency, deliveries/s, lost,
# closes, peak RSS; then details, raw JSON and the exact commands).
#
# Usage: bench/fanout.sh [--quick] [--no-build] [--no-redis]
# Env:   BENCH_RUNS ("1000:20 1000:100 1000:200 10000:2 10000:10 10000:20"),
#        BENCH_SECS (seconds of sending per run, default 10; --quick: 3),
#        BENCH_SIZE (message bytes, default 64), BENCH_KEEP=1 keeps the
#        temporary folder (server logs, raw outputs).
#
# Without redis-server on PATH, or with a wssd that refuses --broker redis://,
# the Redis runs are skipped with a notice. Ports are free loopback ports
# picked at start. Only the processes this script starts are stopped, by PID.
set -euo pipefail

die() { echo "bench/fanout.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

quick=0
build=1
want_redis=1
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --no-build) build=0 ;;
        --no-redis) want_redis=0 ;;
        -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $arg (try --help)" ;;
    esac
done

if [[ $quick == 1 ]]; then secs=${BENCH_SECS:-3}; else secs=${BENCH_SECS:-10}; fi
[[ $secs =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECS must be a whole number of seconds above 0, not '$secs'"
size=${BENCH_SIZE:-64}
[[ $size =~ ^[1-9][0-9]*$ ]] && ((size >= 16)) || die "BENCH_SIZE must be a number of bytes >= 16, not '$size'"
runs=${BENCH_RUNS:-"1000:20 1000:100 1000:200 10000:2 10000:10 10000:20"}
for run in $runs; do
    [[ $run =~ ^[1-9][0-9]*:[1-9][0-9]*$ ]] || die "BENCH_RUNS entries are SUBSCRIBERS:RATE (whole numbers), not '$run'"
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wssd="$root/target/release/wssd"
results_dir="$root/bench/results"

# Settings come from this script only (this also keeps WSSD_BENCH_ALLOW_REMOTE off).
while read -r name; do unset "$name"; done < <(compgen -e | grep '^WSSD_' || true)

command -v python3 >/dev/null || die "python3 is needed to pick ports and write the report"

if [[ $build == 1 ]]; then
    say "cargo build --release --bin wssd"
    (cd "$root" && cargo build --release --bin wssd)
fi
[[ -x $wssd ]] || die "$wssd not found (run without --no-build)"

redis_bin=""
if [[ $want_redis == 1 ]]; then
    redis_bin=$(command -v redis-server || true)
    if [[ -z $redis_bin ]]; then
        echo "NOTICE: redis-server is not installed: skipping the two-instance (Redis) runs." >&2
        echo "NOTICE: install it (Debian: apt-get install redis-server) to measure fan-out across instances." >&2
    fi
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit=$(ulimit -n)
max_subs=0
for run in $runs; do ((${run%%:*} > max_subs)) && max_subs=${run%%:*}; done
if [[ $fd_limit != unlimited ]] && ((fd_limit < max_subs + 256)); then
    die "open-file limit $fd_limit is too low for $max_subs subscribers (needs about $((max_subs + 256))); raise it (ulimit -Hn as root) or lower BENCH_RUNS"
fi

# ---------------------------------------------------------------- processes we own
tmp=$(mktemp -d /tmp/wssd-fanout.XXXXXX)
pids=()
stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_ports N: N distinct free TCP ports on 127.0.0.1.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# wait_port PORT PID LOG: 0 once 127.0.0.1:PORT accepts, 1 if PID exited first or 15 s passed.
wait_port() {
    for _ in $(seq 150); do
        kill -0 "$2" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

cd "$tmp" # no stray ./wssd.toml or .env is read by the servers
mkdir -p runs

# start_wssd NAME PORT ADMIN_PORT [BROKER]: starts one instance; prints its PID.
start_wssd() {
    local name=$1 port=$2 admin=$3 broker=${4:-}
    local cmd=("$wssd" --listen "127.0.0.1:$port" --tls self-signed --state-dir "$tmp/state-$name"
        --route /ws/news=broadcast --max-connections 20000 --max-connections-per-ip 20000
        --admin "127.0.0.1:$admin" --log-level warn)
    [[ -n $broker ]] && cmd+=(--broker "$broker")
    echo "[server $name] ${cmd[*]}" | sed "s#$tmp#\$TMP#g; s#$root/##g" >>"$tmp/commands.txt"
    "${cmd[@]}" >>"$tmp/wssd-$name.log" 2>&1 &
    echo $!
}

# cpu_ticks PID: user+system clock ticks used so far.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'; }
# hwm_kib PID: peak resident memory (VmHWM) in KiB.
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
# cpu_stat: "BUSY TOTAL" ticks of the whole machine.
cpu_stat() { awk '/^cpu / {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit}' /proc/stat; }
# dropped ADMIN_PORT: wssd_subscribers_dropped_total summed over labels.
dropped() {
    python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
except Exception:
    print("n/a"); sys.exit()
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
              if l.startswith("wssd_subscribers_dropped_total"))))
EOF
}

failures=0
: >"$tmp/commands.txt"

# one_run TOPOLOGY SUBS RATE [REDIS_PORT]: fresh server(s), one bench, facts to runs/.
one_run() {
    local topo=$1 subs=$2 rate=$3 redis_port=${4:-}
    local name="$topo-$subs-$rate" messages=$((rate * secs))
    local ports pa aa pb ab pid_a pid_b="" sub_url pub_url broker=""
    read -r pa aa pb ab <<<"$(free_ports 4)"
    [[ $topo == redis ]] && broker="redis://127.0.0.1:$redis_port"
    pid_a=$(start_wssd "A" "$pa" "$aa" "$broker")
    pids+=("$pid_a")
    if ! wait_port "$pa" "$pid_a"; then
        echo "   wssd A did not start; its log:" >&2
        tail -n 5 "$tmp/wssd-A.log" >&2
        return 1
    fi
    sub_url="wss://127.0.0.1:$pa/ws/news"
    pub_url=$sub_url
    if [[ $topo == redis ]]; then
        pid_b=$(start_wssd "B" "$pb" "$ab" "$broker")
        pids+=("$pid_b")
        if ! wait_port "$pb" "$pid_b"; then
            echo "   wssd B did not start; its log:" >&2
            tail -n 5 "$tmp/wssd-B.log" >&2
            stop_pid "$pid_a"
            return 1
        fi
        pub_url="wss://127.0.0.1:$pb/ws/news"
    fi
    local cmd=("$wssd" bench fanout "$sub_url" --insecure --subscribers "$subs" --messages "$messages"
        --rate "$rate" --size "$size" --json)
    [[ $pub_url != "$sub_url" ]] && cmd+=(--publish-url "$pub_url")
    say "$name: $subs subscribers, $rate msg/s x $secs s ($messages messages of $size B)${pid_b:+, publisher on instance B}"
    echo "[$name] ${cmd[*]}" | sed "s#$tmp#\$TMP#g; s#$root/##g" >>"$tmp/commands.txt"
    local cpu_a0 cpu_b0=0 cpu_r0=0 stat0 stat1 status=0 out="$tmp/runs/$name" t0 t1
    cpu_a0=$(cpu_ticks "$pid_a")
    [[ -n $pid_b ]] && cpu_b0=$(cpu_ticks "$pid_b")
    [[ $topo == redis ]] && cpu_r0=$(cpu_ticks "$redis_pid")
    stat0=$(cpu_stat)
    t0=$(date +%s.%N)
    # `time` reports the CPU seconds of the bench client (user, system).
    local TIMEFORMAT='%U %S'
    { time timeout $((secs + 240)) "${cmd[@]}" >"$out.json" 2>"$out.err" || status=$?; } 2>"$out.time"
    t1=$(date +%s.%N)
    stat1=$(cpu_stat)
    if [[ $status != 0 ]]; then
        echo "   failed (exit $status): $(tail -n 3 "$out.err" | tr '\n' ' ')" >&2
        echo '{"failed":true}' >"$out.json"
        failures=$((failures + 1))
    else
        sed 's/^/   /' "$out.err" >&2
    fi
    {
        echo "topology $topo"
        echo "subs $subs"
        echo "rate $rate"
        echo "clk_tck $(getconf CLK_TCK)"
        echo "machine_busy $(($(cut -d' ' -f1 <<<"$stat1") - $(cut -d' ' -f1 <<<"$stat0")))"
        echo "machine_total $(($(cut -d' ' -f2 <<<"$stat1") - $(cut -d' ' -f2 <<<"$stat0")))"
        echo "loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "hwm_a $(hwm_kib "$pid_a")"
        echo "wall $(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')"
        echo "client_cpu $(awk '{print $1 + $2}' "$out.time")"
        echo "cpu_a $(($(cpu_ticks "$pid_a") - cpu_a0))"
        [[ $topo == redis ]] && echo "cpu_redis $(($(cpu_ticks "$redis_pid") - cpu_r0))"
        echo "dropped_a $(dropped "$aa")"
        if [[ -n $pid_b ]]; then
            echo "hwm_b $(hwm_kib "$pid_b")"
            echo "cpu_b $(($(cpu_ticks "$pid_b") - cpu_b0))"
            echo "dropped_b $(dropped "$ab")"
        fi
    } >"$out.meta"
    stop_pid "$pid_a"
    [[ -n $pid_b ]] && stop_pid "$pid_b"
    return 0
}

# ---------------------------------------------------------------- runs
say "single instance"
for run in $runs; do
    one_run single "${run%%:*}" "${run##*:}" || die "wssd would not start (see above)"
done

redis_note=""
redis_pid=""
if [[ $want_redis == 0 ]]; then
    redis_note="Redis runs skipped (--no-redis)."
elif [[ -z $redis_bin ]]; then
    redis_note="Redis runs skipped: redis-server is not installed."
else
    read -r redis_port <<<"$(free_ports 1)"
    mkdir -p "$tmp/redis"
    "$redis_bin" --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$tmp/redis" --loglevel warning >"$tmp/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    echo "[redis] redis-server --port $redis_port --bind 127.0.0.1 --save '' --appendonly no" >>"$tmp/commands.txt"
    wait_port "$redis_port" "$redis_pid" || die "redis-server did not start: $(tail -n 3 "$tmp/redis.log")"
    # Does this wssd have the Redis broker yet?
    read -r probe_port probe_admin <<<"$(free_ports 2)"
    probe_pid=$(start_wssd probe "$probe_port" "$probe_admin" "redis://127.0.0.1:$redis_port")
    pids+=("$probe_pid")
    if wait_port "$probe_port" "$probe_pid"; then
        stop_pid "$probe_pid"
        say "two instances sharing redis-server on 127.0.0.1:$redis_port (subscribers on A, publisher on B)"
        for run in $runs; do
            one_run redis "${run%%:*}" "${run##*:}" "$redis_port" || { redis_note="Redis runs stopped: wssd would not start with the broker."; break; }
        done
    else
        reason=$(grep -m1 -i 'error' "$tmp/wssd-probe.log" || tail -n 1 "$tmp/wssd-probe.log")
        redis_note="Redis runs skipped: this wssd refuses --broker redis:// (${reason:-no reason logged})."
        echo "NOTICE: $redis_note" >&2
    fi
    echo "redis=$("$redis_bin" --version | head -n 1)" >>"$tmp/versions.txt"
fi

# ---------------------------------------------------------------- report
{
    echo "nproc=$(nproc)"
    echo "kernel=$(uname -sr)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "wssd=$("$wssd" --version 2>/dev/null || echo '?')"
    echo "commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "secs=$secs"
    echo "size=$size"
    echo "runs=$runs"
    echo "redis_note=$redis_note"
    cat "$tmp/versions.txt" 2>/dev/null || true
} >"$tmp/machine.txt"

mkdir -p "$results_dir"
out_md="$results_dir/fanout-$(date -u +%Y-%m-%d).md"
python3 "$root/bench/fanout_report.py" "$tmp" "$out_md"
say "wrote $out_md"
cat "$out_md"
if ((failures > 0)); then
    die "$failures run(s) failed; their rows read n/a (rerun with BENCH_KEEP=1 to keep the logs)"
fi
