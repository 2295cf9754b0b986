#!/usr/bin/env bash
# bench/floor.sh: where each server's CPU goes per operation, and the best
# wssd/naive ratio any change to wssd's own code could reach on this machine.
#
# bench/run.sh's ceiling column assumes wssd's user-space time could fall to
# zero. It cannot: the TLS cryptography (AES-GCM per record; key exchange,
# signature and key schedule per handshake) is the same work for wssd and the
# naive echo, both use aws-lc through rustls. This script samples the server
# with `perf record` during the same `wssd bench` runs as bench/run.sh (wssd
# on wss:// and ws://, the naive echo; 64 B x 1 in flight, 16 KiB, connects)
# and splits its CPU per operation into:
#   kernel    system calls, the loopback TCP path, wake-ups
#   crypto    aws-lc (AES-GCM, X25519, ML-KEM, P-256, SHA-2/3, HKDF)
#   memory    glibc malloc/free and memcpy/memmove/memset
#   other     everything else in user space (rustls' record and handshake
#             logic, tungstenite, hyper, tokio, wssd)
# The floor is kernel + crypto: wssd's CPU per operation if its memory and
# other parts cost nothing. "best reachable" = naive's CPU per operation over
# wssd's floor (for the TLS cost: ws:// CPU over ws:// CPU plus what wss://
# adds in kernel and crypto). A target above it cannot be met by changing
# wssd's code on this machine.
#
# Fan-out: 10,000 subscribers at 2 msg/s (bench/fanout.sh's baseline: one
# message's deliveries at a time, nothing queued behind it) and at 20 msg/s
# (issue 16's case: a burst every 50 ms). Server (unpinned, default workers,
# as fanout.sh) and client are both sampled; the floor of a burst is
# subscribers x (server + client kernel and crypto per delivery) spread over
# every core: its last delivery cannot arrive sooner, so p99 cannot be below
# about that.
#
# Writes bench/results/floor-latest.md and floor-latest.json.
#
# Usage: bench/floor.sh [--quick] [--no-build]
# Env:   BENCH_SECS (default 10; --quick: 3), BENCH_PORT_BASE (default 18450:
#        uses BASE ... BASE+3), BENCH_FANOUT_SUBS (10000), BENCH_KEEP=1 keeps
#        the temporary folder,
#        BENCH_SERVER_BIN=PATH measures another wssd binary.
# Needs: perf (Debian linux-perf) allowed to sample the server's process
# (root, or kernel.perf_event_paranoid <= 1 for kernel samples).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for arg in "$@"; do bench_arg "$arg"; done

timing_settings 1
port_base=${BENCH_PORT_BASE:-18450}
wssd_port=$port_base
plain_port=$((port_base + 1))
naive_port=$((port_base + 2))
fanout_port=$((port_base + 3))
fanout_subs=${BENCH_FANOUT_SUBS:-10000}
[[ $fanout_subs =~ ^[1-9][0-9]*$ ]] || die "BENCH_FANOUT_SUBS must be a positive whole number, not '$fanout_subs'"
naive="$root/target/naive-echo/release/naive-echo"
drop_env '^WSSD_'

command -v python3 >/dev/null || die "python3 is needed to read the results"
command -v taskset >/dev/null || die "taskset (util-linux) is needed to pin processes to cores"
command -v perf >/dev/null || die "perf is needed to sample the servers: apt-get install linux-perf"
paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo 2)
if [[ $(id -u) != 0 ]] && ((paranoid > 1)); then
    die "perf may not sample kernel time here (kernel.perf_event_paranoid=$paranoid): run as root or set it to 1"
fi

build_wssd --release
build_naive

raise_fd_limit
plan_cores "server and client"
ports_free "$wssd_port" "$plain_port" "$naive_port" "$fanout_port"
own_tmp wssd-floor
cd "$tmp"
mkdir -p state runs
make_cert

server_limits=(--max-connections 1000000 --max-connections-per-ip 1000000 --log-level warn --state-dir "$tmp/state")
say "wssd (wss://127.0.0.1:$wssd_port), wssd ws:// ($plain_port), naive ($naive_port); core ${server_cpus:-any}"
TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$server_wssd" --listen "127.0.0.1:$wssd_port" --tls files \
    --cert "$tmp/cert.pem" --key "$tmp/key.pem" --admin off --route /ws/echo=echo \
    "${server_limits[@]}" >"$tmp/wssd.log" 2>&1 &
wssd_pid=$!
pids+=("$wssd_pid")
TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$server_wssd" --tls off --http "127.0.0.1:$plain_port" \
    --admin off --route /ws/echo=echo "${server_limits[@]}" >"$tmp/wssd-ws.log" 2>&1 &
plain_pid=$!
pids+=("$plain_pid")
TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$naive" "127.0.0.1:$naive_port" "$tmp/cert.pem" \
    "$tmp/key.pem" >"$tmp/naive.log" 2>&1 &
naive_pid=$!
pids+=("$naive_pid")
wait_port "$wssd_port" "$wssd_pid" wssd
wait_port "$plain_port" "$plain_pid" "wssd ws://"
wait_port "$naive_port" "$naive_pid" "naive echo"

failures=0
commands_file="$tmp/commands.txt"
: >"$commands_file"
hold=0

# sample NAME SERVER PID MODE URL ARGS...: one `wssd bench` run with the
# server's CPU ticks (all, kernel) around it and perf sampling it from one
# second in until one second before the end.
sample() {
    local name=$1 server=$2 pid=$3 mode=$4 url=$5 all sys perf_pid
    shift 5
    bench_start "$name" "$server" "$mode" "$url" "$@"
    all=$(cpu_ticks "$pid")
    sys=$(CPU_FIELDS='$13' cpu_ticks "$pid")
    (
        sleep 1
        exec perf record -q -F 1999 -p "$pid" -o "$bench_out.perf" -- \
            sleep "$(awk -v s="$secs" 'BEGIN {print (s > 3 ? s - 2 : 1)}')"
    ) >/dev/null 2>"$bench_out.perf.err" &
    perf_pid=$!
    bench_exec
    wait "$perf_pid" || echo "   perf record failed: $(tail -n 2 "$bench_out.perf.err")" >&2
    {
        echo "$bench_machine"
        echo "server $(($(cpu_ticks "$pid") - all))"
        echo "server_sys $(($(CPU_FIELDS='$13' cpu_ticks "$pid") - sys))"
    } >"$bench_out.cpu"
    if [[ -s $bench_out.perf ]]; then
        perf report -i "$bench_out.perf" --no-children --sort dso,sym --stdio -g none \
            --percent-limit 0 2>/dev/null >"$bench_out.profile" || true
    fi
    rm -f "$bench_out.perf"
    bench_show
}

wssd_url="wss://127.0.0.1:$wssd_port/ws/echo"
plain_url="ws://127.0.0.1:$plain_port/ws/echo"
naive_url="wss://127.0.0.1:$naive_port/ws/echo"
for run in "echo64 echo --conns 100 --size 64" \
    "echo16k echo --conns 10 --size 16384 --binary" \
    "connect connect --workers 16"; do
    read -r -a a <<<"$run"
    sample "${a[0]}" wssd "$wssd_pid" "${a[1]}" "$wssd_url" "${a[@]:2}" --secs "$secs"
    sample "${a[0]}" naive "$naive_pid" "${a[1]}" "$naive_url" "${a[@]:2}" --secs "$secs"
    if [[ ${a[0]} == echo64 ]]; then
        sample "${a[0]}" wssd-ws "$plain_pid" "${a[1]}" "$plain_url" "${a[@]:2}" --secs "$secs"
    fi
done

# sample_fanout RATE: RATE messages a second to fanout_subs subscribers of a
# fresh broadcast server; perf samples the server and the client for 3 s
# once every subscriber is connected; their CPU ticks over the same seconds.
sample_fanout() {
    local url="wss://127.0.0.1:$fanout_port/ws/news" rate=$1 out="$tmp/runs/fanout-$1" fan_pid client_pid i
    say "fanout: $fanout_subs subscribers, $rate msg/s (unpinned, as bench/fanout.sh)"
    "$server_wssd" --listen "127.0.0.1:$fanout_port" --tls files --cert "$tmp/cert.pem" --key "$tmp/key.pem" \
        --admin off --route /ws/news=broadcast "${server_limits[@]}" >"$tmp/fanout-$rate.log" 2>&1 &
    fan_pid=$!
    pids+=("$fan_pid")
    wait_port "$fanout_port" "$fan_pid" "wssd broadcast"
    echo "[fanout, $rate msg/s] target/release/wssd bench fanout $url --ca \$TMP/cert.pem --subscribers $fanout_subs" \
        "--messages $((rate * 12)) --rate $rate --size 64 --json" >>"$commands_file"
    "$wssd" bench fanout "$url" --ca "$tmp/cert.pem" --subscribers "$fanout_subs" --messages $((rate * 12)) \
        --rate "$rate" --size 64 --json >"$out.json" 2>"$out.err" &
    client_pid=$!
    pids+=("$client_pid")
    for i in $(seq 1200); do
        grep -q "connected " "$out.err" 2>/dev/null && break
        kill -0 "$client_pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 2 # the warm-up message and the first measured bursts
    local before_s before_c
    before_s="$(cpu_ticks "$fan_pid") $(CPU_FIELDS='$13' cpu_ticks "$fan_pid")"
    before_c="$(cpu_ticks "$client_pid") $(CPU_FIELDS='$13' cpu_ticks "$client_pid")"
    perf record -q -F 999 -p "$fan_pid" -o "$out.server.perf" -- sleep 3 >/dev/null 2>&1 &
    local p1=$!
    perf record -q -F 999 -p "$client_pid" -o "$out.client.perf" -- sleep 3 >/dev/null 2>&1 || true
    wait "$p1" || true
    {
        echo "server $(($(cpu_ticks "$fan_pid") - ${before_s% *}))"
        echo "server_sys $(($(CPU_FIELDS='$13' cpu_ticks "$fan_pid") - ${before_s#* }))"
        echo "client $(($(cpu_ticks "$client_pid") - ${before_c% *}))"
        echo "client_sys $(($(CPU_FIELDS='$13' cpu_ticks "$client_pid") - ${before_c#* }))"
        echo "clk_tck $(getconf CLK_TCK)"
        echo "window 3"
        echo "deliveries_per_sec $((fanout_subs * rate))"
        echo "subscribers $fanout_subs"
        echo "cores $(nproc)"
    } >"$out.cpu"
    for i in server client; do
        perf report -i "$out.$i.perf" --no-children --sort dso,sym --stdio -g none --percent-limit 0 \
            2>/dev/null >"$out.$i.profile" || true
        rm -f "$out.$i.perf"
    done
    wait "$client_pid" || { echo "   the fan-out client failed: $(tail -n 3 "$out.err")" >&2; failures=$((failures + 1)); }
    stop_pids "$fan_pid"
}
sample_fanout 2
sample_fanout 20

mkdir -p "$results_dir"
{
    machine_facts
    echo "perf=$(perf --version 2>/dev/null || echo '?')"
    echo "secs=$secs"
    echo "server_cpus=${server_cpus:-any}"
    echo "client_cpus=${client_cpus:-any}"
    echo "server_bin=${BENCH_SERVER_BIN:-target/release/wssd}" | sed "s#$root/##"
} >"$tmp/machine.txt"
python3 "$root/bench/floor_report.py" "$tmp" "$results_dir"
say "wrote $results_dir/floor-latest.md and $results_dir/floor-latest.json"
cat "$results_dir/floor-latest.md"
((failures == 0)) || die "$failures bench run(s) failed (rerun with BENCH_KEEP=1 to keep the logs)"
