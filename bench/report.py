#!/usr/bin/env python3
"""bench/report.py TMP RESULTS_DIR: turns the runs of bench/run.sh into
RESULTS_DIR/latest.md (a comparison table with notes) and latest.json.

TMP holds machine.txt, commands.txt, nginx.conf.txt and runs/NAME.SERVER.{json,cpu}.
"""

import json
import os
import sys

RUNS = ["idle", "echo64", "echo16k", "connect"]
SERVERS = ["wssd", "nginx"]


def load_machine(tmp):
    info = {}
    with open(os.path.join(tmp, "machine.txt")) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            info[key] = value
    return info


def load_run(tmp, name, server):
    base = os.path.join(tmp, "runs", f"{name}.{server}")
    result = None
    try:
        with open(base + ".json") as f:
            result = json.loads(f.read().strip() or "{}")
    except (OSError, ValueError):
        result = None
    if result is not None and (result.get("failed") or "mode" not in result):
        result = {"failed": True}
    cpu = {}
    try:
        with open(base + ".cpu") as f:
            for line in f:
                key, _, value = line.strip().partition(" ")
                cpu[key] = float(value)
    except (OSError, ValueError):
        cpu = {}
    return result, cpu


def ok(run):
    return run is not None and not run.get("failed")


def fmt(value, decimals=0):
    if value is None:
        return "n/a"
    if decimals == 0:
        return f"{value:,.0f}"
    return f"{value:,.{decimals}f}"


def ratio(wssd, nginx, higher_is_better):
    if wssd is None or nginx is None:
        return "n/a"
    num, den = (wssd, nginx) if higher_is_better else (nginx, wssd)
    if den <= 0:
        return "n/a"
    return f"{num / den:.2f}x"


def rss_parts(run):
    """(TLS-terminating processes per conn, whole server side per conn, backend per conn)."""
    if not ok(run) or not run.get("open"):
        return None, None, None
    pids = run.get("pids") or []
    open_ = run["open"]

    def per_conn(items):
        if not items:
            return None
        return sum(p["after_kib"] - p["before_kib"] for p in items) / open_

    if len(pids) >= 3:  # nginx master, nginx worker, backend
        return per_conn(pids[:2]), per_conn(pids), per_conn(pids[2:])
    return per_conn(pids), per_conn(pids), None


def cpu_pct(cpu, group):
    if not cpu or group not in cpu or not cpu.get("wall") or not cpu.get("clk_tck"):
        return None
    return 100.0 * cpu[group] / cpu["clk_tck"] / cpu["wall"]


def main():
    tmp, out_dir = sys.argv[1], sys.argv[2]
    machine = load_machine(tmp)
    runs = {(n, s): load_run(tmp, n, s) for n in RUNS for s in SERVERS}

    def get(name, server, key):
        run = runs[(name, server)][0]
        if not ok(run):
            return None
        return run.get(key)

    rows = []

    def add(label, name, key, higher_is_better, decimals=0):
        w, n = get(name, "wssd", key), get(name, "nginx", key)
        rows.append((label, fmt(w, decimals), fmt(n, decimals), ratio(w, n, higher_is_better)))

    conns = machine.get("idle_conns", "?")
    add("Echo 64 B text, 100 conns: round trips/s (higher is better)", "echo64", "msgs_per_sec", True)
    add("Echo 64 B: p50 round trip, us (lower is better)", "echo64", "p50_us", False)
    add("Echo 64 B: p99 round trip, us (lower is better)", "echo64", "p99_us", False)
    add("Echo 16 KiB binary, 10 conns: MB/s, both directions (higher is better)", "echo16k", "mb_per_sec", True, 1)
    add("Echo 16 KiB: p99 round trip, us (lower is better)", "echo16k", "p99_us", False)
    add("Connects/s, 16 workers, full TLS handshake + upgrade + echo + close (higher is better)",
        "connect", "connects_per_sec", True)
    add("Connect to first echo: p50, us (lower is better)", "connect", "p50_us", False)
    add("Connect to first echo: p99, us (lower is better)", "connect", "p99_us", False)

    w_tls, w_all, _ = rss_parts(runs[("idle", "wssd")][0])
    n_tls, n_all, n_backend = rss_parts(runs[("idle", "nginx")][0])
    rows.append((f"Idle wss:// RSS per connection, KiB, {conns} conns: TLS-terminating process(es) "
                 "(wssd vs nginx master+worker; lower is better)",
                 fmt(w_tls, 1), fmt(n_tls, 1), ratio(w_tls, n_tls, False)))
    rows.append(("Idle RSS per connection, KiB: whole server side "
                 "(wssd vs nginx + its ws:// backend; lower is better)",
                 fmt(w_all, 1), fmt(n_all, 1), ratio(w_all, n_all, False)))
    w_open, n_open = get("idle", "wssd", "open"), get("idle", "nginx", "open")
    rows.append((f"Idle connections opened (of {conns})", fmt(w_open), fmt(n_open), ""))
    errors = {}
    for server in SERVERS:
        total, any_run = 0, False
        for name in RUNS:
            run = runs[(name, server)][0]
            if ok(run):
                total += run.get("errors", 0)
                any_run = True
        errors[server] = total if any_run else None
    rows.append(("Errors, all runs (lower is better)", fmt(errors["wssd"]), fmt(errors["nginx"]), ""))

    lines = []
    w = lines.append
    w("# wssd vs nginx: terminating wss:// on loopback")
    w("")
    w(f"Run {machine.get('date', '?')} on {machine.get('nproc', '?')} CPUs ({machine.get('cpu', '?')}), "
      f"{machine.get('kernel', '?')}, {machine.get('mem', '?')} RAM. "
      f"{machine.get('wssd', '?')}; nginx {machine.get('nginx', '?')}; {machine.get('openssl', '?')}. "
      f"{machine.get('secs', '?')} s per throughput run"
      f"{' (--quick)' if machine.get('quick') == '1' else ''}.")
    w("")
    w("**ratio** = how many times better wssd is: wssd/nginx where higher is better, "
      "nginx/wssd where lower is better (latency, memory). Above 1.00x wssd is better, below nginx is.")
    w("")
    w("| metric | wssd | nginx | ratio |")
    w("|---|---:|---:|---:|")
    for label, a, b, r in rows:
        w(f"| {label} | {a} | {b} | {r} |")
    w("")
    if n_backend is not None:
        w(f"The nginx backend (wssd --tls off, plain ws:// echo) grew by {n_backend:.1f} KiB per "
          "connection on its own; it is included in the whole-server-side row only.")
        w("")

    w("## CPU during each run")
    w("")
    w("Server side: share of one core its processes used while `wssd bench` ran (wall time includes "
      "connecting and closing). Client: cores the bench client used during the measured seconds, "
      f"out of the {machine.get('client_threads', '?')} it was given. A server side near 100 % was "
      "the limit; a client at its full share means the client limited the rate, and the ratio then "
      "understates the difference between the servers.")
    w("")
    w("| run | server | server process(es) | nginx's backend | client (cores) | whole machine (cores) | other processes (cores) |")
    w("|---|---|---:|---:|---:|---:|---:|")
    noisy = []
    for name in RUNS:
        for server in SERVERS:
            run, cpu = runs[(name, server)]
            if run is None:
                continue
            main_pct = cpu_pct(cpu, "wssd" if server == "wssd" else "nginx")
            backend = cpu_pct(cpu, "backend") if server == "nginx" else None
            client = run.get("client_cpu_cores") if ok(run) else None
            machine_cores = None
            if cpu.get("machine_total"):
                machine_cores = cpu["machine_busy"] / cpu["machine_total"] * float(machine.get("nproc", 1))
            other = None
            if machine_cores is not None and client is not None and main_pct is not None:
                # The client figure covers the measured seconds only, the others the whole wall time.
                share = min(1.0, float(run.get("secs", 0)) / cpu["wall"]) if cpu.get("wall") else 1.0
                other = max(0.0, machine_cores - (main_pct + (backend or 0)) / 100 - client * share)
                if other > 0.15:
                    noisy.append(f"{name}/{server}")
            w(f"| {name} | {server} | {fmt(main_pct)} % | "
              f"{fmt(backend) + ' %' if backend is not None else ''} | "
              f"{fmt(client, 2) if client is not None else ''} | "
              f"{fmt(machine_cores, 2) if machine_cores is not None else ''} | "
              f"{fmt(other, 2) if other is not None else ''} |")
    w("")
    if noisy:
        w(f"**Other processes used CPU during {', '.join(noisy)}**: those numbers are disturbed; "
          "rerun on an idle machine.")
        w("")

    w("## Runs")
    w("")
    w("| run | server | errors | negotiated TLS | result line |")
    w("|---|---|---:|---|---|")
    for name in RUNS:
        for server in SERVERS:
            run = runs[(name, server)][0]
            if run is None:
                w(f"| {name} | {server} | n/a | | not run |")
            elif not ok(run):
                w(f"| {name} | {server} | n/a | | failed: see the log kept with BENCH_KEEP=1 |")
            else:
                w(f"| {name} | {server} | {run.get('errors', 0)} | {run.get('tls') or ''} | "
                  f"`{json.dumps(run, separators=(',', ':'))}` |")
    w("")

    w("## How it was set up, and what is fair")
    w("")
    w(f"- Cores: the server side is pinned with `taskset` to core {machine.get('server_cpus')}, the bench "
      f"client to core(s) {machine.get('client_cpus')} ({machine.get('client_threads')} tokio worker "
      "thread(s)). nginx runs `worker_processes 1`; wssd runs one tokio worker thread "
      "(`TOKIO_WORKER_THREADS=1`), so each server side has one core.")
    w("- nginx's backend (a second wssd with `--tls off`) is pinned to the same core as nginx: on a "
      "2-core machine there is no other core to give it without taking the client's. So nginx's TLS work "
      "and the backend's echo share one core, exactly the budget wssd has for doing both itself. A "
      "setup with a spare core for the backend would favour nginx.")
    w("- With 2 cores the client has one core too; where the CPU table shows the server core below "
      "~100 %, the client (or round-trip latency with one message in flight) limited the rate, and the "
      "ratio understates the gap between the servers.")
    w("- Same certificate (ECDSA P-256 from `wssd cert generate`), TLS 1.2 and 1.3 on both; the client "
      "is the same for both and offers the same cipher suites and key-exchange groups (see the "
      "negotiated TLS column). The connect test disables TLS session resumption in the client, so "
      "every handshake is a full one on both servers.")
    w("- Memory: RSS (VmRSS) of the server processes before opening the idle connections and after "
      "they are all open and RSS stopped moving for 1 s, divided by the connections open. The idle run "
      "goes first, on fresh processes. The fair process-to-process comparison is wssd against nginx's "
      "master+worker, with the caveat that wssd also runs the echo application in that memory while "
      "nginx only relays; the whole-server-side row adds nginx's backend.")
    w("- nginx keeps its defaults apart from what the proxy needs (`proxy_http_version 1.1`, Upgrade "
      "and Connection headers, `proxy_read_timeout 3600s`); wssd's connection limits are raised so the "
      "idle test can open every connection from one IP.")
    w("- Latencies are closed-loop (each connection sends its next message when the echo of the "
      "previous one arrives): round-trip times at full load, not latency at a fixed request rate.")
    w("- Loopback only, one run: differences of a few percent are noise; rerun before concluding.")
    w("")

    w("## Machine")
    w("")
    for key in ["date", "nproc", "cpu", "mem", "kernel", "wssd", "nginx", "openssl",
                "secs", "hold", "idle_conns", "server_cpus", "client_cpus", "client_threads"]:
        w(f"- {key}: {machine.get(key, '?')}")
    w("")

    w("## Commands")
    w("")
    w("`bench/run.sh` started the servers like this ($TMP is its temporary folder):")
    w("")
    w("```")
    w(f"TOKIO_WORKER_THREADS=1 taskset -c {machine.get('server_cpus')} target/release/wssd "
      "--listen 127.0.0.1:PORT --tls files --cert $TMP/cert.pem --key $TMP/key.pem --admin off "
      "--route /ws/echo=echo --max-connections 1000000 --max-connections-per-ip 1000000 "
      "--log-level warn --state-dir $TMP/state")
    if machine.get("have_nginx") == "1":
        w(f"TOKIO_WORKER_THREADS=1 taskset -c {machine.get('server_cpus')} target/release/wssd "
          "--tls off --http 127.0.0.1:PORT2 --admin off --route /ws/echo=echo "
          "--max-connections 1000000 --max-connections-per-ip 1000000 --log-level warn "
          "--state-dir $TMP/state")
        w(f"taskset -c {machine.get('server_cpus')} nginx -p $TMP/nginx -e $TMP/nginx/error.log "
          "-c $TMP/nginx/nginx.conf -g 'daemon off;'")
    w("```")
    w("")
    w("and measured with:")
    w("")
    w("```")
    try:
        with open(os.path.join(tmp, "commands.txt")) as f:
            for line in f:
                w(line.rstrip("\n"))
    except OSError:
        pass
    w("```")
    w("")
    conf_path = os.path.join(tmp, "nginx.conf.txt")
    if os.path.exists(conf_path):
        w("<details><summary>nginx.conf</summary>")
        w("")
        w("```nginx")
        with open(conf_path) as f:
            for line in f:
                w(line.rstrip("\n"))
        w("```")
        w("</details>")
        w("")

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "latest.md"), "w") as f:
        f.write("\n".join(lines))
    summary = {
        "machine": machine,
        "runs": {f"{n}.{s}": {"result": runs[(n, s)][0], "server_cpu": runs[(n, s)][1]}
                 for n in RUNS for s in SERVERS},
    }
    with open(os.path.join(out_dir, "latest.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
