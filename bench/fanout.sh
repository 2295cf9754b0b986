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
# Helpers shared with bench/run.sh and bench/proxy.sh; bench/fanout_report.py writes the report.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

want_redis=1
for arg in "$@"; do
    case "$arg" in
        --no-redis) want_redis=0 ;;
        *) bench_arg "$arg" ;;
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

# Settings come from this script only (this also keeps WSSD_BENCH_ALLOW_REMOTE off).
drop_env '^WSSD_'

command -v python3 >/dev/null || die "python3 is needed to pick ports and write the report"

build_wssd --release --bin wssd

redis_bin=""
if [[ $want_redis == 1 ]]; then
    redis_bin=$(command -v redis-server || true)
    if [[ -z $redis_bin ]]; then
        echo "NOTICE: redis-server is not installed: skipping the two-instance (Redis) runs." >&2
        echo "NOTICE: install it (Debian: apt-get install redis-server) to measure fan-out across instances." >&2
    fi
fi

raise_fd_limit
max_subs=0
for run in $runs; do ((${run%%:*} > max_subs)) && max_subs=${run%%:*}; done
if [[ $fd_limit != unlimited ]] && ((fd_limit < max_subs + 256)); then
    die "open-file limit $fd_limit is too low for $max_subs subscribers (needs about $((max_subs + 256))); raise it (ulimit -Hn as root) or lower BENCH_RUNS"
fi

# ---------------------------------------------------------------- processes we own
own_tmp wssd-fanout

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

# wait_up PORT PID: 0 once 127.0.0.1:PORT accepts, not 0 if PID exited first or 15 s passed.
wait_up() { await_port "$1" "$2" 150; }

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

# hwm_kib PID: peak resident memory (VmHWM) in KiB.
hwm_kib() { proc_status VmHWM "$1"; }
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
    if ! wait_up "$pa" "$pid_a"; then
        echo "   wssd A did not start; its log:" >&2
        tail -n 5 "$tmp/wssd-A.log" >&2
        return 1
    fi
    sub_url="wss://127.0.0.1:$pa/ws/news"
    pub_url=$sub_url
    if [[ $topo == redis ]]; then
        pid_b=$(start_wssd "B" "$pb" "$ab" "$broker")
        pids+=("$pid_b")
        if ! wait_up "$pb" "$pid_b"; then
            echo "   wssd B did not start; its log:" >&2
            tail -n 5 "$tmp/wssd-B.log" >&2
            stop_pids "$pid_a"
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
    stop_pids "$pid_a"
    [[ -n $pid_b ]] && stop_pids "$pid_b"
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
    wait_up "$redis_port" "$redis_pid" || die "redis-server did not start: $(tail -n 3 "$tmp/redis.log")"
    # Does this wssd have the Redis broker yet?
    read -r probe_port probe_admin <<<"$(free_ports 2)"
    probe_pid=$(start_wssd probe "$probe_port" "$probe_admin" "redis://127.0.0.1:$redis_port")
    pids+=("$probe_pid")
    if wait_up "$probe_port" "$probe_pid"; then
        stop_pids "$probe_pid"
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
    machine_facts
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
