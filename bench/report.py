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

RUNS = ["idle", "echo64", "echo64x8", "echo16k", "connect"]
SERVERS = ["wssd", "naive", "nginx", "wssd-ws"]
COMPARED = ["naive", "nginx"]  # the columns wssd is compared with, in this order
# The process group of each server whose CPU time the run recorded (see bench/run.sh).
CPU_GROUP = {"wssd": "wssd", "wssd-ws": "wssd", "naive": "naive", "nginx": "nginx"}

# Issue 16's targets, per server CPU-second, against the naive echo measured in
# the same run: (label, run, count key, scale, unit, absolute floor, ratio floor).
TARGETS = [
    ("64 B echo, 100 conns, 8 in flight: round trips", "echo64x8", "round_trips", 1, "", None, 3.0),
    ("64 B echo, 100 conns, 1 in flight: round trips", "echo64", "round_trips", 1, "", 120_000, 1.5),
    ("16 KiB binary echo, 10 conns: MB, both directions", "echo16k", "round_trips", 2 * 16384 / 1e6, "", 1000, 1.45),
    ("connects (TCP + TLS 1.3 + upgrade + echo + close)", "connect", "connects", 1, "", 5000, 1.33),
]


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


def per_cpu_second(runs, name, server, count_key, scale=1, part=""):
    """Operations (count_key x scale) per CPU-second of the server's processes (nginx: with its
    backend), over the whole run; None when not measured. part="_sys" counts only their kernel
    time: the figure the server would reach if its user-space code cost nothing."""
    run, cpu = runs.get((name, server), (None, {}))
    group = CPU_GROUP[server] + part
    if not ok(run) or not run.get(count_key) or not cpu.get("clk_tck") or group not in cpu:
        return None
    ticks = cpu.get(group, 0) + (cpu.get("backend" + part, 0) if server == "nginx" else 0)
    if ticks <= 0:
        return None
    return run[count_key] * scale / (ticks / cpu["clk_tck"])


def target_rows(runs):
    """The issue 16 table: (label, wssd, naive, ratio, target, met) per target."""
    rows = []
    for label, name, key, scale, _, floor, ratio_floor in TARGETS:
        w = per_cpu_second(runs, name, "wssd", key, scale)
        n = per_cpu_second(runs, name, "naive", key, scale)
        r = ratio_value(w, n, True)
        parts = [f">= {ratio_floor:g}x the naive"]
        met = r is not None and r >= ratio_floor
        if floor is not None:
            parts.insert(0, f">= {floor:,}")
            met = met and w is not None and w >= floor
        ceiling = ratio_value(per_cpu_second(runs, name, "wssd", key, scale, "_sys"), n, True)
        rows.append((label, fmt(w), fmt(n), fmt_ratio(r), " and ".join(parts),
                     "n/a" if r is None else ("yes" if met else "**no**"), fmt_ratio(ceiling)))
    w_idle, _, _ = rss_parts(runs[("idle", "wssd")][0])
    p_idle, _, _ = rss_parts(runs[("idle", "wssd-ws")][0])
    n_idle, _, _ = rss_parts(runs[("idle", "naive")][0])
    for label, value, limit in [("idle memory per wss:// connection, KiB", w_idle, 12),
                                ("idle memory per ws:// connection, KiB", p_idle, 6)]:
        rows.append((label, fmt(value, 1), fmt(n_idle, 1) if "wss" in label else "",
                     ratio(value, n_idle, False) if "wss" in label else "", f"<= {limit}",
                     "n/a" if value is None else ("yes" if value <= limit else "**no**"), ""))
    tls = per_cpu_second(runs, "echo64", "wssd", "round_trips")
    plain = per_cpu_second(runs, "echo64", "wssd-ws", "round_trips")
    cost = None if tls is None or not plain else tls / plain
    rows.append(("TLS cost: wss/ws round trips per CPU-second, 64 B x 1", fmt(cost, 2), "", "",
                 ">= 0.9", "n/a" if cost is None else ("yes" if cost >= 0.9 else "**no**"), ""))
    return rows


def main():
    tmp, out_dir = sys.argv[1], sys.argv[2]
    machine = load_machine(tmp)
    runs = {(n, s): load_run(tmp, n, s) for n in RUNS for s in SERVERS}

    def get(name, server, key):
        return result_value(runs, name, server, key)

    rows = []

    def add(label, name, key, higher_is_better, decimals=0):
        values = [get(name, s, key) for s in ["wssd"] + COMPARED]
        rows.append((label, [fmt(v, decimals) for v in values],
                     [ratio(values[0], v, higher_is_better) for v in values[1:]]))

    def add_cpu(label, name, key, scale=1, decimals=0):
        values = [per_cpu_second(runs, name, s, key, scale) for s in ["wssd"] + COMPARED]
        rows.append((label, [fmt(v, decimals) for v in values],
                     [ratio(values[0], v, True) for v in values[1:]]))

    conns = machine.get("idle_conns", "?")
    add("Echo 64 B text, 100 conns, 1 in flight: round trips/s (higher is better)", "echo64", "msgs_per_sec", True)
    add_cpu("Echo 64 B, 1 in flight: round trips per server CPU-second", "echo64", "round_trips")
    add("Echo 64 B: p50 round trip, us (lower is better)", "echo64", "p50_us", False)
    add("Echo 64 B: p99 round trip, us (lower is better)", "echo64", "p99_us", False)
    add("Echo 64 B text, 100 conns, 8 in flight: round trips/s (higher is better)", "echo64x8", "msgs_per_sec", True)
    add_cpu("Echo 64 B, 8 in flight: round trips per server CPU-second", "echo64x8", "round_trips")
    add("Echo 16 KiB binary, 10 conns: MB/s, both directions (higher is better)", "echo16k", "mb_per_sec", True, 1)
    add_cpu("Echo 16 KiB: MB per server CPU-second", "echo16k", "round_trips", 2 * 16384 / 1e6, 1)
    add("Echo 16 KiB: p99 round trip, us (lower is better)", "echo16k", "p99_us", False)
    add("Connects/s, 16 workers, full TLS handshake + upgrade + echo + close (higher is better)",
        "connect", "connects_per_sec", True)
    add_cpu("Connects per server CPU-second", "connect", "connects")
    add("Connect to first echo: p50, us (lower is better)", "connect", "p50_us", False)
    add("Connect to first echo: p99, us (lower is better)", "connect", "p99_us", False)

    idle = {s: rss_parts(runs[("idle", s)][0]) for s in SERVERS}
    tls_values = [idle[s][0] for s in ["wssd"] + COMPARED]
    rows.append((f"Idle wss:// RSS per connection, KiB, {conns} conns: TLS-terminating process(es) "
                 "(nginx: master+worker; lower is better)",
                 [fmt(v, 1) for v in tls_values], [ratio(tls_values[0], v, False) for v in tls_values[1:]]))
    all_values = [idle[s][1] for s in ["wssd"] + COMPARED]
    rows.append(("Idle RSS per connection, KiB: whole server side (nginx: + its ws:// backend; lower is better)",
                 [fmt(v, 1) for v in all_values], [ratio(all_values[0], v, False) for v in all_values[1:]]))
    rows.append((f"Idle connections opened (of {conns})",
                 [fmt(get("idle", s, "open")) for s in ["wssd"] + COMPARED], ["", ""]))
    errors = {server: errors_total(runs, RUNS, server) for server in SERVERS}
    rows.append(("Errors, all runs (lower is better)", [fmt(errors[s]) for s in ["wssd"] + COMPARED], ["", ""]))
    n_backend = idle["nginx"][2]

    lines = []
    w = lines.append
    w("# wssd vs the naive Rust echo and nginx: terminating wss:// on loopback")
    w("")
    w(run_header(machine, f"{machine.get('wssd', '?')}; nginx {machine.get('nginx', '?')}; "
                          f"{machine.get('openssl', '?')}."))
    w("")
    w("## Issue 16's targets")
    w("")
    w("Per server CPU-second (operations in the run divided by the CPU time the server's process used "
      "during it, connecting and closing included), wssd against the naive tokio-tungstenite + rustls "
      "echo (`bench/naive-echo`) in this same run. Memory: RSS growth per open connection.")
    w("")
    w("The ceiling column is what wssd/naive would be if wssd's process spent only its kernel "
      "time (system calls, wake-ups, and on loopback the peer's receive path, which the sender "
      "pays): the most any change to wssd's own code can reach in this setup.")
    w("")
    w("| target | wssd | naive | wssd/naive | target | met | ceiling: wssd's kernel time only |")
    w("|---|---:|---:|---:|---|---|---:|")
    for label, a, b, r, t, met, ceiling in target_rows(runs):
        w(f"| {label} | {a} | {b} | {r} | {t} | {met} | {ceiling} |")
    w("")
    w("## All figures")
    w("")
    w("**ratio** = how many times better wssd is: wssd/other where higher is better, "
      "other/wssd where lower is better (latency, memory). Above 1.00x wssd is better.")
    w("")
    w("| metric | wssd | naive | nginx | wssd/naive | wssd/nginx |")
    w("|---|---:|---:|---:|---:|---:|")
    for label, values, ratios in rows:
        w(f"| {label} | {' | '.join(values)} | {' | '.join(ratios)} |")
    w("")
    ws_rows = [("Echo 64 B, 1 in flight: round trips per server CPU-second",
                per_cpu_second(runs, "echo64", "wssd-ws", "round_trips"), 0),
               ("Echo 64 B, 8 in flight: round trips per server CPU-second",
                per_cpu_second(runs, "echo64x8", "wssd-ws", "round_trips"), 0),
               ("Idle ws:// RSS per connection, KiB", idle["wssd-ws"][0], 1)]
    w("wssd on plain ws:// (same binary, `--tls off`): " + "; ".join(
        f"{label}: {fmt(v, d)}" for label, v, d in ws_rows) + ".")
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
            main_pct = cpu_pct(cpu, CPU_GROUP[server])
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
      "(`TOKIO_WORKER_THREADS=1`), so each server side has one core; so does the naive echo.")
    w("- The naive echo (`bench/naive-echo`) is what a Rust tutorial writes: tokio-tungstenite's "
      "`accept_async` over tokio-rustls, `while let Some(msg) = ws.next().await { ws.send(msg) }` (a "
      "flush per message), one task per connection, every setting at its default, the same "
      "certificate and the same rustls crypto provider (aws-lc-rs).")
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
