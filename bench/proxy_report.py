#!/usr/bin/env python3
"""bench/proxy_report.py TMP RESULTS_DIR: turns the runs of bench/proxy.sh into
RESULTS_DIR/proxy-latest.md (a comparison table with notes) and proxy-latest.json.

TMP holds machine.txt, commands.txt, nginx.conf.txt, Caddyfile.txt,
logs.*.txt and runs/NAME.SERVER.{json,cpu,out,err}. What it shares with the
other reports (loading, formatting, common sections) is in bench/common.py.
"""

import os
import sys

from common import (cpu_pct, errors_total, fmt, fmt_ratio, kib_per_conn, load_machine, load_run,
                    machine_and_other_cores, ok, ratio_value, result_value, run_header, write_details,
                    write_json, write_machine, write_measured_with, write_method_notes, write_noisy_note,
                    write_runs_table, write_text)

RUNS = ["idle", "echo64", "echo64x8", "echo16k", "connect"]
SERVERS = ["wssd", "nginx", "caddy"]
OTHERS = ["nginx", "caddy"]
LOGS = [("wssd proxy", "logs.wssd.log.txt"), ("backend", "logs.backend.log.txt"),
        ("nginx", "logs.nginx_error.log.txt"), ("caddy", "logs.caddy.log.txt")]


def load_run_and_errors(tmp, name, server):
    """(result, cpu) as common.load_run gives them, and the error lines of the run's output."""
    result, cpu = load_run(tmp, name, server)
    base = os.path.join(tmp, "runs", f"{name}.{server}")
    error_lines = []
    try:
        with open(base + ".out") as f:
            # The human part of the output lists error kinds under "errors".
            for line in f:
                if line.startswith("{"):
                    continue
                text = line.strip()
                if text and ("error" in text.lower() or "mismatch" in text.lower()
                             or "closed" in text.lower() or "dropped" in text.lower()):
                    error_lines.append(text)
    except OSError:
        pass
    return result, cpu, error_lines


def rss_parts(run):
    """(front process(es) per conn, backend per conn); the backend PID is the last --pid."""
    if not ok(run) or not run.get("open"):
        return None, None
    pids = run.get("pids") or []
    if len(pids) < 2:
        return None, None
    open_ = run["open"]
    return kib_per_conn(pids[:-1], open_), kib_per_conn(pids[-1:], open_)


# Issue 16's proxy targets: (label, run, count key, scale). Per busy core-second: the
# operations divided by the CPU time of the front AND the backend, which share one core.
TARGETS = [
    ("64 B echo, 100 conns, 1 in flight: round trips", "echo64", "round_trips", 1),
    ("64 B echo, 100 conns, 8 in flight: round trips", "echo64x8", "round_trips", 1),
    ("16 KiB binary echo, 10 conns: MB, both directions", "echo16k", "round_trips", 2 * 16384 / 1e6),
    ("connects (TLS + upgrade + upstream connect + echo + close)", "connect", "connects", 1),
]
TARGET_RATIO = 1.2   # wssd >= 1.2x the best of nginx and Caddy
MEMORY_RATIO = 2.0   # memory per proxied connection at least 2x below nginx's


def per_busy_core_second(runs, name, server, key, scale=1, front="front"):
    """Operations (key x scale) per CPU-second of the front and the backend together.

    front="front_sys" counts only the front's kernel time: the figure the front
    would reach if its own user-space code cost nothing."""
    run, cpu, _ = runs.get((name, server), (None, {}, []))
    if not ok(run) or not run.get(key) or not cpu.get("clk_tck") or front not in cpu:
        return None
    ticks = cpu.get(front, 0) + cpu.get("backend", 0)
    if ticks <= 0:
        return None
    return run[key] * scale / (ticks / cpu["clk_tck"])


def write_targets(w, runs):
    """The issue 16 table: wssd per busy core-second against the best of nginx and Caddy."""
    w("## Issue 16's proxy targets")
    w("")
    w("Per busy core-second: operations divided by the CPU time of the front end and the backend "
      "together (both on the server core). Target: wssd at least "
      f"{TARGET_RATIO:g}x the best of nginx and Caddy on each; memory per proxied connection at "
      f"least {MEMORY_RATIO:g}x below nginx's.")
    w("")
    w("The ceiling column is what wssd / best would be if wssd's front end spent only its kernel "
      "time (system calls, and on loopback the peer's receive path and wake-up, which the sender "
      "pays): the most any user-space change in wssd can reach in this setup.")
    w("")
    w("| target | wssd | nginx | caddy | wssd / best | met | ceiling: wssd front's kernel time only |")
    w("|---|---:|---:|---:|---:|---|---:|")
    for label, name, key, scale in TARGETS:
        values = [per_busy_core_second(runs, name, s, key, scale) for s in SERVERS]
        others = [v for v in values[1:] if v is not None]
        r = ratio_value(values[0], max(others), True) if others else None
        met = "n/a" if r is None else ("yes" if r >= TARGET_RATIO else "**no**")
        floor = per_busy_core_second(runs, name, SERVERS[0], key, scale, front="front_sys")
        ceiling = ratio_value(floor, max(others), True) if others else None
        w(f"| {label} | {' | '.join(fmt(v) for v in values)} | {fmt_ratio(r)} | {met} | "
          f"{fmt_ratio(ceiling)} |")
    fronts = [rss_parts(runs[("idle", s)][0])[0] for s in SERVERS]
    r = ratio_value(fronts[0], fronts[1], False)
    met = "n/a" if r is None else ("yes" if r >= MEMORY_RATIO else "**no**")
    w(f"| idle memory per proxied connection, front only, KiB (vs nginx) | "
      f"{' | '.join(fmt(v, 1) for v in fronts)} | {fmt_ratio(r)} | {met} |")
    w("")


def read_log(tmp, filename):
    try:
        with open(os.path.join(tmp, filename)) as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError:
        return None


def main():
    tmp, out_dir = sys.argv[1], sys.argv[2]
    machine = load_machine(tmp)
    present = machine.get("servers", "").split()
    runs = {(n, s): load_run_and_errors(tmp, n, s) for n in RUNS for s in SERVERS}

    def get(name, server, key):
        return result_value(runs, name, server, key)

    rows = []  # (label, [wssd, nginx, caddy] formatted, [ratio vs nginx, ratio vs caddy], key for the bar)
    bar = []   # (label, ratio vs nginx, ratio vs caddy)

    def add(label, values, higher_is_better, decimals=0, in_bar=False):
        ratios = [ratio_value(values[0], values[i], higher_is_better) for i in (1, 2)]
        rows.append((label, [fmt(v, decimals) for v in values], [fmt_ratio(r) for r in ratios]))
        if in_bar:
            bar.append((label, ratios[0], ratios[1]))

    def metric(label, name, key, higher_is_better, decimals=0, in_bar=False):
        add(label, [get(name, s, key) for s in SERVERS], higher_is_better, decimals, in_bar)

    conns = machine.get("idle_conns", "?")
    metric("Echo 64 B text, 100 conns: round trips/s (higher is better)", "echo64", "msgs_per_sec",
           True, in_bar=True)
    metric("Echo 64 B: p50 round trip, us (lower is better)", "echo64", "p50_us", False)
    metric("Echo 64 B: p99 round trip, us (lower is better)", "echo64", "p99_us", False)
    metric("Echo 64 B text, 100 conns, 8 in flight: round trips/s (higher is better)", "echo64x8",
           "msgs_per_sec", True)
    metric("Echo 16 KiB binary, 10 conns: MB/s, both directions (higher is better)", "echo16k",
           "mb_per_sec", True, 1, in_bar=True)
    metric("Echo 16 KiB: p99 round trip, us (lower is better)", "echo16k", "p99_us", False)
    metric("Connects/s, 16 workers: full TLS handshake + upgrade + upstream connect + echo + close "
           "(higher is better)", "connect", "connects_per_sec", True, in_bar=True)
    metric("Connect to first echo: p50, us (lower is better)", "connect", "p50_us", False)
    metric("Connect to first echo: p99, us (lower is better)", "connect", "p99_us", False)

    def cpu_per_op(name, server, count_key, group):
        run, cpu, _ = runs[(name, server)]
        if not ok(run) or not run.get(count_key) or group not in cpu or not cpu.get("clk_tck"):
            return None
        return cpu[group] / cpu["clk_tck"] * 1e6 / run[count_key]

    for name, count_key, what in [("echo64", "round_trips", "Echo 64 B"),
                                  ("echo64x8", "round_trips", "Echo 64 B, 8 in flight"),
                                  ("echo16k", "round_trips", "Echo 16 KiB"),
                                  ("connect", "connects", "Connect")]:
        unit = "connect" if count_key == "connects" else "round trip"
        add(f"{what}: front-end CPU per {unit}, us (lower is better)",
            [cpu_per_op(name, s, count_key, "front") for s in SERVERS], False, 1)
        add(f"{what}: front-end kernel CPU per {unit}, us (lower is better)",
            [cpu_per_op(name, s, count_key, "front_sys") for s in SERVERS], False, 1)

    fronts, backends = [], []
    for server in SERVERS:
        f, b = rss_parts(runs[("idle", server)][0])
        fronts.append(f)
        backends.append(b)
    add(f"Idle proxied wss:// RSS per connection, KiB, {conns} conns: front process(es) only "
        "(wssd; nginx master+worker; caddy) (lower is better)", fronts, False, 1, in_bar=True)
    rows.append((f"Backend's RSS growth per connection in the same idle run, KiB (not compared, see below)",
                 [fmt(b, 1) for b in backends], ["", ""]))
    rows.append((f"Idle connections opened (of {conns}) / closed by the server while held",
                 [("n/a" if get("idle", s, "open") is None else
                   f"{fmt(get('idle', s, 'open'))} / {fmt(get('idle', s, 'closed_by_server'))}")
                  for s in SERVERS], ["", ""]))
    errors = [errors_total(runs, RUNS, server) for server in SERVERS]
    rows.append(("Errors, all runs (lower is better)", [fmt(e) for e in errors], ["", ""]))

    lines = []
    w = lines.append
    w("# wss:// through a reverse proxy: wssd vs nginx vs Caddy")
    w("")
    w(run_header(machine, f"{machine.get('wssd', '?')} ({machine.get('wssd_commit', '?')}); "
                          f"nginx {machine.get('nginx', '?')}; Caddy {machine.get('caddy', '?')}; "
                          f"{machine.get('openssl', '?')}."))
    w("")
    write_targets(w, runs)
    w("Each front end terminates wss:// with the same certificate and relays to the same plain "
      "`ws://` echo backend (`wssd --tls off`): wssd with its `proxy` route "
      "(`--route /ws/echo=proxy:ws://127.0.0.1:BACKEND`), nginx with `proxy_pass`, Caddy with "
      "`reverse_proxy`. Front end and backend share one core; the client has the other.")
    w("")
    w("**wssd/nginx, wssd/caddy** = how many times better wssd is: wssd/other where higher is better, "
      "other/wssd where lower is better (latency, memory). Above 1.00x wssd is better, below the "
      "other server is.")
    w("")
    w("| metric | wssd | nginx | caddy | wssd/nginx | wssd/caddy |")
    w("|---|---:|---:|---:|---:|---:|")
    for label, values, ratios in rows:
        w(f"| {label} | {' | '.join(values)} | {' | '.join(ratios)} |")
    w("")
    if any(b is not None for b in backends):
        parts = [f"{s} {fmt(b, 1)} KiB" for s, b in zip(SERVERS, backends) if b is not None]
        w("The backend (`wssd --tls off`, restarted before each front end's idle run so each run "
          f"sees a fresh process) grew per proxied idle connection by: {', '.join(parts)}. It is "
          "not part of the front-end row; it differs only by what each front end sends upstream "
          "and how it holds the upstream leg.")
        w("")

    w("The \"front-end CPU per round trip / connect\" rows divide the CPU time the front process(es) "
      "used during the run (connect and close phases included) by the round trips or connects the "
      "client completed: the cost of the proxy path itself, independent of who set the pace.")
    w("")
    # Closing note: the bar from the issue.
    w("## Closing note")
    w("")
    w("Bar: wssd's proxy path at least matches nginx's. Ratios (above 1.00x = wssd better):")
    w("")
    met_all = True
    missing = False
    for label, r_nginx, r_caddy in bar:
        short = label.split(" (")[0]
        if r_nginx is None:
            missing = True
            verdict = "not measured"
        elif r_nginx >= 0.97:
            verdict = "meets the bar" if r_nginx < 1.03 else "beats nginx"
        else:
            verdict = "**below nginx**"
            met_all = False
        w(f"- {short}: wssd/nginx {fmt_ratio(r_nginx)} ({verdict}), wssd/caddy {fmt_ratio(r_caddy)}")
    w("")
    if missing:
        w("Some rows could not be compared (a server missing or a run failed): no verdict.")
    elif met_all:
        w("**The bar is met**: on every throughput row and on memory per idle connection wssd's proxy "
          "path is at least level with nginx's (within 3 %, one run's noise, or better).")
    else:
        w("**The bar is not met** on the rows marked above.")
    w("")
    trailing = [label.split(" (")[0] + f" ({value})"
                for label, values, ratios in rows
                for value in [ratios[0]]
                if "lower is better" in label and value.endswith("x") and float(value[:-1]) < 0.97]
    if trailing:
        w(f"Latency, CPU and memory rows where wssd trails nginx (not part of the bar): {'; '.join(trailing)}.")
        w("")

    w("## CPU during each run")
    w("")
    w("Front end and backend: share of one core their processes used while `wssd bench` ran (wall "
      "time includes connecting and closing). Both are pinned to the same core, so front + backend "
      "near 100 % means that core was the limit. Client: cores the bench client used during the "
      f"measured seconds, out of the {machine.get('client_threads', '?')} it was given; a client at "
      "its full share limited the rate, and the ratios then understate the differences.")
    w("")
    w("| run | server | front end | backend | front + backend | client (cores) | whole machine (cores) | other processes (cores) |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    noisy = []
    for name in RUNS:
        for server in SERVERS:
            run, cpu, _ = runs[(name, server)]
            if run is None:
                continue
            front = cpu_pct(cpu, "front")
            backend = cpu_pct(cpu, "backend")
            both = None if front is None or backend is None else front + backend
            client = run.get("client_cpu_cores") if ok(run) else None
            machine_cores, other = machine_and_other_cores(run, cpu, machine, both, client)
            if other is not None and other > 0.15:
                noisy.append(f"{name}/{server}")
            w(f"| {name} | {server} | {fmt(front)} % | {fmt(backend)} % | {fmt(both)} % | "
              f"{fmt(client, 2) if client is not None else ''} | "
              f"{fmt(machine_cores, 2) if machine_cores is not None else ''} | "
              f"{fmt(other, 2) if other is not None else ''} |")
    w("")
    write_noisy_note(w, noisy)

    w("## Processes before and after each run")
    w("")
    w("RSS, open file descriptors and threads of the front process(es) and of the backend, just "
      "before each run and after it, once the client had closed everything and the descriptor "
      "counts had stopped moving for 1 s (at most 15 s). Descriptors that stay above their "
      "starting count point to connections (client or upstream legs) that were not closed.")
    w("")
    w("| run | server | front RSS KiB before -> after | front fds before -> after | front threads | backend RSS KiB before -> after | backend fds before -> after |")
    w("|---|---|---:|---:|---:|---:|---:|")
    leaks = []
    for name in RUNS:
        for server in SERVERS:
            run, cpu, _ = runs[(name, server)]
            if run is None or "fds_front_after" not in cpu:
                continue

            def pair(key, cpu=cpu):
                return f"{fmt(cpu.get(key + '_before'))} -> {fmt(cpu.get(key + '_after'))}"

            w(f"| {name} | {server} | {pair('rss_front')} | {pair('fds_front')} | "
              f"{fmt(cpu.get('threads_front_before'))} -> {fmt(cpu.get('threads_front_after'))} | "
              f"{pair('rss_backend')} | {pair('fds_backend')} |")
            for key in ("fds_front", "fds_backend"):
                grew = cpu.get(key + "_after", 0) - cpu.get(key + "_before", 0)
                if grew > 2:
                    leaks.append(f"{name}/{server} ({key.replace('fds_', '')} +{grew:.0f})")
    w("")
    if leaks:
        w(f"**File descriptors still open after the run**: {', '.join(leaks)}.")
        w("")

    w("## Server logs (level warn and above)")
    w("")
    for title, filename in LOGS:
        log = read_log(tmp, filename)
        if log is None:
            continue
        w(f"- {title}: {len(log)} line(s)")
        if log:
            w("")
            w("  ```")
            for line in log[:8]:
                w(f"  {line[:400]}")
            if len(log) > 8:
                w(f"  ... {len(log) - 8} more")
            w("  ```")
    w("")

    write_runs_table(w, runs, RUNS, SERVERS)
    error_notes = []
    for name in RUNS:
        for server in SERVERS:
            run, _, error_lines = runs[(name, server)]
            if ok(run) and run.get("errors", 0) and error_lines:
                error_notes.append((name, server, error_lines))
    if error_notes:
        w("What the client reported for runs with errors:")
        w("")
        w("```")
        for name, server, error_lines in error_notes:
            for line in error_lines[:6]:
                w(f"[{name}, {server}] {line[:300]}")
        w("```")
        w("")

    negotiated = {}
    for server in SERVERS:
        for name in RUNS:
            run = runs[(name, server)][0]
            if ok(run) and run.get("tls"):
                negotiated[server] = run["tls"]
                break
    tls_note = ""
    if len(set(negotiated.values())) > 1:
        tls_note = (" They did not all negotiate the same: "
                    + ", ".join(f"{s} `{t}`" for s, t in negotiated.items())
                    + ". rustls (wssd) and nginx follow the client's preference (AES-256-GCM first); "
                    "Go (Caddy) applies its own order and prefers AES-128-GCM on CPUs with AES "
                    "instructions, which is slightly cheaper per byte: a small edge for Caddy in the "
                    "16 KiB row.")
    w("## How it was set up, and what is fair")
    w("")
    w(f"- Cores: the front ends and the backend are pinned with `taskset` to core "
      f"{machine.get('server_cpus')}, the bench client to core(s) {machine.get('client_cpus')} "
      f"({machine.get('client_threads')} tokio worker thread(s)). wssd runs one tokio worker thread "
      "(`TOKIO_WORKER_THREADS=1`), nginx `worker_processes 1`, Caddy `GOMAXPROCS=1` (the Go runtime's "
      "helper threads are pinned to the same core). All three front ends run the whole time; the "
      "ones not under test are idle.")
    w("- The backend is one process shared by the three front ends and does the same work for each "
      "(a plain ws:// echo), so differences come from the front ends. Each front end shares the "
      "server core with the backend, so a cheaper front end leaves more of the core to the backend.")
    w("- What each front end does per message differs by design: nginx and Caddy turn the upgraded "
      "connection into a byte tunnel (TLS decrypt, copy, write), while wssd's proxy follows the "
      "WebSocket framing on both legs (message size limit and protocol checks from the frame "
      "headers, pings answered and keepalive pings sent per leg, close codes relayed) while it "
      "forwards the data frames.")
    w("- Same certificate (ECDSA P-256 from `wssd cert generate`) on all three; the client is the same "
      "for all and offers the same cipher suites and key-exchange groups (see the negotiated TLS "
      "column)." + tls_note + " The connect test disables TLS session resumption, so every handshake is a full one, "
      "and every connect makes the front end open a new upstream TCP connection and WebSocket "
      "upgrade to the backend.")
    w("- Memory: RSS (VmRSS) of the front process(es) and, separately, the backend, before opening the "
      "idle connections and after they are all open and RSS stopped moving for 1 s, divided by the "
      "connections open. The idle runs go first, on fresh front-end processes. Go's garbage-collected "
      "heap makes Caddy's figure depend on when the collector last ran.")
    w("- nginx keeps its defaults apart from what the proxy needs (`proxy_http_version 1.1`, Upgrade "
      "and Connection headers, `proxy_read_timeout 3600s`); Caddy keeps `reverse_proxy` defaults "
      "(it handles the upgrade itself); wssd's connection limits are raised on the front end and the "
      "backend so the idle test can open every connection from one IP.")
    w("- Caddy runs with admin endpoint, automatic HTTPS, OCSP stapling and trust-store installation "
      "off, HOME/XDG_DATA_HOME/XDG_CONFIG_HOME and its storage in the run's temporary folder: it "
      "makes no network request and writes nothing outside that folder.")
    write_method_notes(w)

    w("## Machine")
    w("")
    write_machine(w, machine, ["date", "nproc", "cpu", "mem", "kernel", "wssd", "wssd_commit", "wssd_binary",
                               "nginx", "caddy", "openssl", "secs", "hold", "idle_conns", "server_cpus",
                               "client_cpus", "client_threads", "servers"])

    cpus = machine.get("server_cpus")
    pin = f"taskset -c {cpus} " if cpus not in (None, "any") else ""
    w("## Commands")
    w("")
    w("`bench/proxy.sh` started the servers like this ($TMP is its temporary folder; PORT = "
      "BENCH_PORT_BASE, default 18450):")
    w("")
    w("```")
    w(f"wssd cert generate --hostname localhost --hostname 127.0.0.1 --out-cert $TMP/cert.pem "
      "--out-key $TMP/key.pem")
    w(f"TOKIO_WORKER_THREADS=1 {pin}target/release/wssd --tls off --http 127.0.0.1:PORT+3 --admin off "
      "--route /ws/echo=echo --max-connections 1000000 --max-connections-per-ip 1000000 "
      "--log-level warn --state-dir $TMP/state")
    w(f"TOKIO_WORKER_THREADS=1 {pin}target/release/wssd --listen 127.0.0.1:PORT --tls files "
      "--cert $TMP/cert.pem --key $TMP/key.pem --admin off "
      "--route /ws/echo=proxy:ws://127.0.0.1:PORT+3 --max-connections 1000000 "
      "--max-connections-per-ip 1000000 --log-level warn --state-dir $TMP/state")
    if "nginx" in present:
        w(f"{pin}nginx -p $TMP/nginx -e $TMP/nginx/error.log -c $TMP/nginx/nginx.conf -g 'daemon off;'")
    if "caddy" in present:
        w(f"HOME=$TMP/caddy/home XDG_DATA_HOME=$TMP/caddy/data XDG_CONFIG_HOME=$TMP/caddy/config "
          f"GOMAXPROCS=1 {pin}caddy run --config $TMP/caddy/Caddyfile --adapter caddyfile")
    w("```")
    w("")
    write_measured_with(w, tmp)
    for title, filename, lang in [("nginx.conf", "nginx.conf.txt", "nginx"),
                                  ("Caddyfile", "Caddyfile.txt", "")]:
        write_details(w, title, os.path.join(tmp, filename), lang)

    os.makedirs(out_dir, exist_ok=True)
    write_text(os.path.join(out_dir, "proxy-latest.md"), lines)
    summary = {
        "machine": machine,
        "ratios": {label.split(" (")[0]: {"wssd/nginx": rn, "wssd/caddy": rc} for label, rn, rc in bar},
        "idle_rss_per_conn_kib": {s: {"front": f, "backend": b}
                                  for s, f, b in zip(SERVERS, fronts, backends)},
        "runs": {f"{n}.{s}": {"result": runs[(n, s)][0], "server": runs[(n, s)][1]}
                 for n in RUNS for s in SERVERS},
    }
    write_json(os.path.join(out_dir, "proxy-latest.json"), summary)


if __name__ == "__main__":
    main()
