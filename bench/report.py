#!/usr/bin/env python3
"""bench/report.py TMP RESULTS_DIR: turns the runs of bench/run.sh into
RESULTS_DIR/latest.md (a comparison table with notes) and latest.json.

TMP holds machine.txt, commands.txt, nginx.conf.txt and runs/NAME.SERVER.{json,cpu}.
What it shares with the other reports (loading, formatting, common sections)
is in bench/common.py.
"""

import os
import sys

from common import (cpu_pct, errors_total, fmt, fmt_ratio, kib_per_conn, load_machine, load_run,
                    machine_and_other_cores, ok, ratio_value, result_value, run_header, write_details,
                    write_json, write_machine, write_measured_with, write_method_notes, write_noisy_note,
                    write_runs_table, write_text)

RUNS = ["idle", "echo64", "echo16k", "connect"]
SERVERS = ["wssd", "nginx"]


def ratio(wssd, nginx, higher_is_better):
    return fmt_ratio(ratio_value(wssd, nginx, higher_is_better))


def rss_parts(run):
    """(TLS-terminating processes per conn, whole server side per conn, backend per conn)."""
    if not ok(run) or not run.get("open"):
        return None, None, None
    pids = run.get("pids") or []
    open_ = run["open"]
    if len(pids) >= 3:  # nginx master, nginx worker, backend
        return kib_per_conn(pids[:2], open_), kib_per_conn(pids, open_), kib_per_conn(pids[2:], open_)
    return kib_per_conn(pids, open_), kib_per_conn(pids, open_), None


def main():
    tmp, out_dir = sys.argv[1], sys.argv[2]
    machine = load_machine(tmp)
    runs = {(n, s): load_run(tmp, n, s) for n in RUNS for s in SERVERS}

    def get(name, server, key):
        return result_value(runs, name, server, key)

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
    errors = {server: errors_total(runs, RUNS, server) for server in SERVERS}
    rows.append(("Errors, all runs (lower is better)", fmt(errors["wssd"]), fmt(errors["nginx"]), ""))

    lines = []
    w = lines.append
    w("# wssd vs nginx: terminating wss:// on loopback")
    w("")
    w(run_header(machine, f"{machine.get('wssd', '?')}; nginx {machine.get('nginx', '?')}; "
                          f"{machine.get('openssl', '?')}."))
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
            servers_pct = None if main_pct is None else main_pct + (backend or 0)
            machine_cores, other = machine_and_other_cores(run, cpu, machine, servers_pct, client)
            if other is not None and other > 0.15:
                noisy.append(f"{name}/{server}")
            w(f"| {name} | {server} | {fmt(main_pct)} % | "
              f"{fmt(backend) + ' %' if backend is not None else ''} | "
              f"{fmt(client, 2) if client is not None else ''} | "
              f"{fmt(machine_cores, 2) if machine_cores is not None else ''} | "
              f"{fmt(other, 2) if other is not None else ''} |")
    w("")
    write_noisy_note(w, noisy)
    write_runs_table(w, runs, RUNS, SERVERS)

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
    write_method_notes(w)

    w("## Machine")
    w("")
    write_machine(w, machine, ["date", "nproc", "cpu", "mem", "kernel", "wssd", "nginx", "openssl",
                               "secs", "hold", "idle_conns", "server_cpus", "client_cpus", "client_threads"])

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
    write_measured_with(w, tmp)
    write_details(w, "nginx.conf", os.path.join(tmp, "nginx.conf.txt"), "nginx")

    os.makedirs(out_dir, exist_ok=True)
    write_text(os.path.join(out_dir, "latest.md"), lines)
    summary = {
        "machine": machine,
        "runs": {f"{n}.{s}": {"result": runs[(n, s)][0], "server_cpu": runs[(n, s)][1]}
                 for n in RUNS for s in SERVERS},
    }
    write_json(os.path.join(out_dir, "latest.json"), summary)


if __name__ == "__main__":
    main()
