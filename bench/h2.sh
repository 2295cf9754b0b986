#!/usr/bin/env bash
# bench/h2.sh: one browser loads a page + 20 assets and opens 10 WebSockets
# (each echoes 3 messages) over HTTP/2 and over HTTP/1.1, on loopback,
# against up to three TLS servers serving the same files and relaying the
# WebSockets to the same plain ws:// echo backend (wssd --tls off):
#
#   (a) wssd     --route /=static:SITE --route /ws/echo=proxy:ws://BACKEND
#                (HTTP/2 on by default; WebSockets over HTTP/2 per RFC 8441)
#   (b) nginx    ssl http2 + root SITE + proxy_pass with Upgrade (worker_processes 1;
#                nginx has no RFC 8441: its WebSockets are HTTP/1.1 connections)
#   (c) Caddy    tls + file_server + reverse_proxy (GOMAXPROCS=1)
#
# The client is Chromium (Debian package) driven by playwright-core
# (bench/h2_load.mjs): a fresh browser per repetition, `--disable-http2` for
# the HTTP/1.1 runs (the same server processes serve both). Reports, per
# server and protocol: TCP connections and TLS handshakes (the browser's
# NetLog, exact; cross-checked server-side with `ss` and, for wssd, its
# metrics wssd_http2_connections_total and wssd_websocket_upgrades_total{http}),
# and the wall time from navigation start to the last echo (median of N).
# Writes bench/results/h2-DATE.md and h2-DATE.json. See bench/README.md.
#
# Usage: bench/h2.sh [--quick] [--no-build]
# Env:   BENCH_REPS (repetitions per server and protocol, default 7; --quick: 3),
#        BENCH_PORT_BASE (default 18490: BASE wssd, BASE+1 nginx, BASE+2 caddy,
#        BASE+3 backend, BASE+4 wssd's admin), BENCH_KEEP=1 keeps the temporary folder,
#        BENCH_WSSD=PATH uses that wssd binary instead of building target/release/wssd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for arg in "$@"; do bench_arg "$arg"; done

timing_settings 1
reps=${BENCH_REPS:-$([[ $quick == 1 ]] && echo 3 || echo 7)}
[[ $reps =~ ^[1-9][0-9]?$ ]] || die "BENCH_REPS must be a whole number from 1 to 99, not '$reps'"
port_base=${BENCH_PORT_BASE:-18490}
[[ $port_base =~ ^[1-9][0-9]*$ ]] && ((port_base + 4 <= 65535)) || die "BENCH_PORT_BASE must be a port number (<= 65531), not '$port_base'"
wssd_port=$port_base
nginx_port=$((port_base + 1))
caddy_port=$((port_base + 2))
backend_port=$((port_base + 3))
admin_port=$((port_base + 4))
bench_wssd=${BENCH_WSSD:-}
drop_env '^(WSSD_|CADDY_)'

# ---------------------------------------------------------------- tools
command -v python3 >/dev/null || die "python3 is needed to write the report"
command -v node >/dev/null || die "node is needed (it drives Chromium)"
command -v ss >/dev/null || die "ss (iproute2) is needed to count connections server-side"
command -v taskset >/dev/null || die "taskset (util-linux) is needed to pin processes to cores"
[[ -x ${CHROMIUM_BIN:-/usr/bin/chromium} ]] || die "Chromium not found: apt-get install chromium (or set CHROMIUM_BIN)"
[[ -d $root/tests/browser/node_modules/playwright-core ]] \
    || die "playwright-core not installed: (cd tests/browser && npm ci)"
ensure_pkg nginx
ensure_pkg caddy
nginx_bin=$(find_bin nginx)
caddy_bin=$(find_bin caddy)

if [[ -n $bench_wssd ]]; then
    wssd=$bench_wssd # a given build (for trying the script out): not rebuilt
    [[ -x $wssd ]] || die "BENCH_WSSD=$bench_wssd is not an executable"
else
    build_wssd --release
fi
raise_fd_limit
plan_cores "servers and browser"
ports_free "$wssd_port" "$nginx_port" "$caddy_port" "$backend_port" "$admin_port"

own_tmp wssd-h2-bench
cd "$tmp"
mkdir -p state site/assets nginx/tmp runs netlog caddy/home caddy/data caddy/config
make_cert
chmod 755 "$tmp" # nginx's worker (user nobody when run as root) reads the site
# The page's WebSockets carry Origin https://127.0.0.1:PORT; the backend is a
# plain listener on another port, so it is told to accept any Origin.
server_limits=(--max-connections 10000 --max-connections-per-ip 10000 --log-level warn --state-dir "$tmp/state"
    --allow-origin '*')

# ---------------------------------------------------------------- the site
# 10 stylesheets and 10 scripts of 16 KiB each, and a page that, on `load`,
# opens 10 WebSockets to its own origin; each sends 3 text messages of 64
# bytes one after the other, waiting for each echo. window.benchResult is set
# when the last echo arrived; the sockets stay open until window.benchClose().
pad=$(head -c 16000 /dev/zero | tr '\0' 'x')
links=""
for i in $(seq -w 1 10); do
    printf '/* %s */\n.c%s { color: #123; }\n' "$pad" "$i" >"site/assets/s$i.css"
    printf '// %s\nwindow.assetsRun = (window.assetsRun || 0) + 1;\n' "$pad" >"site/assets/j$i.js"
    links+="<link rel=\"stylesheet\" href=\"/assets/s$i.css\">
<script src=\"/assets/j$i.js\"></script>
"
done
cat >site/index.html <<EOF
<!doctype html>
<html><head><meta charset="utf-8"><title>h2 bench</title>
$links</head>
<body><p>page + 20 assets + 10 WebSockets</p>
<script>
const sockets = [];
function socket(i) {
  return new Promise((resolve) => {
    const ws = new WebSocket('wss://' + location.host + '/ws/echo');
    sockets.push(ws);
    let left = 3;
    const msg = 'm'.repeat(60) + String(i).padStart(4, '0');
    ws.onopen = () => ws.send(msg);
    ws.onmessage = (e) => {
      if (e.data !== msg) return resolve(false);
      if (--left === 0) return resolve(true);
      ws.send(msg);
    };
    ws.onerror = () => resolve(false);
    ws.onclose = () => resolve(false);
  });
}
window.benchClose = () => sockets.forEach((ws) => ws.close(1000));
window.addEventListener('load', async () => {
  const loaded = performance.now();
  const ok = await Promise.all(Array.from({ length: 10 }, (_, i) => socket(i)));
  const done = performance.now();
  const assets = performance.getEntriesByType('resource').filter((r) => r.name.includes('/assets/'));
  window.benchResult = {
    wall_ms: done,
    load_ms: loaded,
    ws_ms: done - loaded,
    page_protocol: performance.getEntriesByType('navigation')[0].nextHopProtocol,
    asset_protocols: [...new Set(assets.map((r) => r.nextHopProtocol))].join(','),
    assets: assets.length,
    assets_run: window.assetsRun || 0,
    ws_ok: ok.filter(Boolean).length,
  };
});
</script></body></html>
EOF

# ---------------------------------------------------------------- servers
say "backend: wssd --tls off (ws://127.0.0.1:$backend_port, core ${server_cpus:-any})"
start_backend "$tmp/backend.log"
servers=()

say "wssd (https://127.0.0.1:$wssd_port, one tokio worker, core ${server_cpus:-any})"
TOKIO_WORKER_THREADS=1 "${pin_server[@]}" "$wssd" --listen "127.0.0.1:$wssd_port" --tls files \
    --cert "$tmp/cert.pem" --key "$tmp/key.pem" --admin "127.0.0.1:$admin_port" \
    --route "/=static:$tmp/site" --route "/ws/echo=proxy:ws://127.0.0.1:$backend_port" \
    "${server_limits[@]}" >"$tmp/wssd.log" 2>&1 &
pids+=("$!")
wait_port "$wssd_port" "$!" "wssd" "$tmp/wssd.log"
servers+=(wssd)

nginx_version="not installed"
if [[ -n $nginx_bin ]]; then
    nginx_version=$("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //')
    # h2 for files; WebSockets relayed over HTTP/1.1.
    NGINX_LISTEN=http2 NGINX_SERVER="        root $tmp/site;" start_nginx "$tmp/nginx/error.log"
    servers+=(nginx)
fi

caddy_version="not installed"
if [[ -n $caddy_bin ]]; then
    caddy_version=$("$caddy_bin" version 2>/dev/null | head -n 1 || echo '?')
    # Files, and a WebSocket relay to the backend.
    start_caddy "	handle /ws/echo {
		reverse_proxy 127.0.0.1:$backend_port
	}
	handle {
		root * $tmp/site
		file_server
	}"
    servers+=(caddy)
fi

# ---------------------------------------------------------------- runs
failures=0
: >"$tmp/commands.txt"
port_of() { case $1 in wssd) echo "$wssd_port" ;; nginx) echo "$nginx_port" ;; caddy) echo "$caddy_port" ;; esac; }
for http in h2 h1; do
    for server in "${servers[@]}"; do
        port=$(port_of "$server")
        cmd=("${pin_client[@]}" node "$root/bench/h2_load.mjs" --url "https://127.0.0.1:$port/"
            --port "$port" --reps "$reps" --http "$http" --out "$tmp/runs/$http.$server.json"
            --netlog-dir "$tmp/netlog")
        [[ $server == wssd ]] && cmd+=(--metrics "http://127.0.0.1:$admin_port/metrics")
        echo "[$http, $server] ${cmd[*]}" | sed "s#$tmp#\$TMP#g; s#$root/##g" >>"$tmp/commands.txt"
        say "$http / $server: $reps loads"
        timeout $((reps * 90 + 30)) "${cmd[@]}" || failures=$((failures + 1))
    done
done

# ---------------------------------------------------------------- report
mkdir -p "$results_dir"
{
    machine_facts
    echo "wssd_commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src 2>/dev/null || echo ' (with uncommitted changes in src/)')"
    echo "wssd_src_commit=$(git -C "$root" log -1 --format=%h -- src Cargo.toml Cargo.lock 2>/dev/null || echo '?') (last commit touching src/ and Cargo files)"
    echo "wssd_binary=built $(date -u -r "$wssd" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$wssd" | cut -c1-16)"
    echo "nginx=$nginx_version"
    echo "caddy=$caddy_version"
    echo "chromium=$("${CHROMIUM_BIN:-/usr/bin/chromium}" --version 2>/dev/null | head -n 1 || echo '?')"
    echo "node=$(node --version)"
    echo "reps=$reps"
    echo "server_cpus=${server_cpus:-any}"
    echo "client_cpus=${client_cpus:-any}"
    echo "servers=${servers[*]}"
    echo "quick=$quick"
} >"$tmp/machine.txt"
[[ -f $tmp/nginx/nginx.conf ]] && sed "s#$tmp#\$TMP#g" "$tmp/nginx/nginx.conf" >"$tmp/nginx.conf.txt"
[[ -f $tmp/caddy/Caddyfile ]] && sed "s#$tmp#\$TMP#g" "$tmp/caddy/Caddyfile" >"$tmp/Caddyfile.txt"
python3 "$root/bench/h2_report.py" "$tmp" "$results_dir"
((failures == 0)) || die "$failures load series failed or had failed loads (their rows show it)"
