#!/usr/bin/env bash
# bench/access-log.sh: what the access log costs a busy server, on loopback.
#
# Runs the same three loads against wssd (plain ws:// and http://, one tokio
# worker pinned to core 0, the client on the other cores) with
# --access-log off, to a file (text) and to a file (json):
#   HTTP requests/s   bench/http_load.py: pipelined GETs of a small static file
#                     (one access line each), and the server's CPU time per
#                     request (/proc: steadier than rates on a shared machine)
#   connects/s        wssd bench connect: open, upgrade, close (one access
#                     line each)
#   echo msgs/s       wssd bench echo, 64 B text (no line per message; the
#                     per-session counters only)
# in BENCH_ROUNDS rounds (the three servers in turn, so drift on a shared
# machine hits all three alike) and prints a markdown table of the medians
# with the change against `off`.
#
# Usage: bench/access-log.sh [--quick] [--no-build]
# Env:   BENCH_SECS (default 10; --quick: 3), BENCH_ROUNDS (default 3),
#        BENCH_PORT_BASE (default 18470:
#        uses BASE and BASE+1), WSSD_BIN (a wssd binary to measure instead of
#        target/release/wssd, e.g. target/debug/wssd), BENCH_KEEP=1 keeps the
#        temporary folder (logs, access logs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for arg in "$@"; do bench_arg "$arg"; done
timing_settings 1
port_base=${BENCH_PORT_BASE:-18470}
port=$port_base
admin=$((port_base + 1))
drop_env '^WSSD_BENCH'

command -v python3 >/dev/null || die "python3 is needed for the HTTP load"
command -v taskset >/dev/null || die "taskset (util-linux) is needed to pin processes to cores"
if [[ -n ${WSSD_BIN:-} ]]; then
    wssd=$WSSD_BIN
    build=0
fi
build_wssd --release
raise_fd_limit
plan_cores "server and client"
ports_free "$port" "$admin"
own_tmp wssd-access-bench
cd "$tmp"
mkdir -p state site
head -c 1024 /dev/zero | tr '\0' 'a' > site/1k.txt

# One run of the three loads against a fresh server started with "$@".
measure() {
    local name=$1
    shift
    TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$wssd" --tls off --http "127.0.0.1:$port" \
        --admin "127.0.0.1:$admin" --state-dir "$tmp/state" --log-level warn \
        --max-connections 100000 --max-connections-per-ip 100000 \
        --route /echo=echo --route "/site=static:$tmp/site" "$@" 2> "$tmp/$name.log" &
    local pid=$!
    pids+=("$pid")
    wait_port "$port" "$pid" "wssd ($name)" "$tmp/$name.log"
    local http connect echo t0 t1
    t0=$(cpu_ticks "$pid")
    http=$("${pin_client[@]}" python3 "$root/bench/http_load.py" "$port" /site/1k.txt "$secs" 4 32)
    t1=$(cpu_ticks "$pid")
    connect=$("${pin_client[@]}" "$wssd" bench connect "ws://127.0.0.1:$port/echo" --secs "$secs" 2>/dev/null | tail -n 1 || true)
    echo=$("${pin_client[@]}" "$wssd" bench echo "ws://127.0.0.1:$port/echo" --conns 50 --secs "$secs" 2>/dev/null | tail -n 1 || true)
    local dropped
    dropped=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^wssd_access_log_dropped_total/ { print $2 }')
    kill "$pid" && wait "$pid" 2>/dev/null || true
    python3 - "$name" "$http" "$connect" "$echo" "${dropped:-0}" "$((t1 - t0))" "$(getconf CLK_TCK)" <<'PY' >> "$tmp/rows"
import json, sys
name, http, connect, echo, dropped, ticks, hz = sys.argv[1:8]
def num(text, *keys):
    try:
        v = json.loads(text)
        for k in keys:
            if k in v:
                return float(v[k])
    except (ValueError, TypeError):
        pass
    return float("nan")
print(json.dumps({
    "name": name,
    "http": num(http, "requests_per_s"),
    "connect": num(connect, "connects_per_sec"),
    "echo": num(echo, "msgs_per_sec"),
    "dropped": float(dropped or 0),
    # Server CPU (all its threads, the writer's too) per HTTP request, in
    # microseconds: steadier than rates on a shared machine.
    "cpu_us": int(ticks) / int(hz) * 1e6 / max(num(http, "requests"), 1),
}))
PY
}

rounds=${BENCH_ROUNDS:-3}
[[ $rounds =~ ^[1-9]$ ]] || die "BENCH_ROUNDS must be 1 to 9, not '$rounds'"
: > "$tmp/rows"
for round in $(seq "$rounds"); do
    say "round $round/$rounds: access log off"
    measure off
    say "round $round/$rounds: access log to a file, text"
    measure text --access-log "$tmp/access.log"
    say "round $round/$rounds: access log to a file, json"
    measure json --access-log "$tmp/access.json" --access-log-format json
done
lines=$(cat "$tmp/access.log" "$tmp/access.json" 2>/dev/null | wc -l)

python3 - "$tmp/rows" "$wssd" "$secs" "$lines" "$rounds" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
rows = []
for name in ["off", "text", "json"]:
    mine = [r for r in runs if r["name"] == name]
    row = {"name": name}
    for k in ["http", "cpu_us", "connect", "echo", "dropped"]:
        vals = [r[k] for r in mine if r[k] == r[k]]
        row[k] = statistics.median(vals) if vals else float("nan")
    rows.append(row)
base = rows[0]
def cell(r, k):
    v, b = r[k], base[k]
    if v != v:
        return "n/a"
    if r is base or b != b or b == 0:
        return f"{v:,.0f}"
    return f"{v:,.0f} ({(v - b) / b * 100:+.1f}%)"
print(f"binary: {sys.argv[2]}; medians of {sys.argv[5]} rounds, {sys.argv[3]} s a load; one server core, client on the others; {sys.argv[4]} access lines written\n")
print("| access log | HTTP requests/s | server CPU µs per request | connects/s | echo msgs/s (64 B) | lines dropped |")
print("|---|---|---|---|---|---|")
for r in rows:
    cpu = r["cpu_us"]
    cpu_cell = f"{cpu:.1f}" if r is base else f"{cpu:.1f} ({(cpu - base['cpu_us']) / base['cpu_us'] * 100:+.1f}%)"
    print(f"| {r['name']} | {cell(r, 'http')} | {cpu_cell} | {cell(r, 'connect')} | {cell(r, 'echo')} | {r['dropped']:.0f} |")
PY
