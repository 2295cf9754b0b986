#!/usr/bin/env python3
"""bench/h2_report.py: the report of bench/h2.sh.

Usage: h2_report.py TMP RESULTS_DIR

Reads TMP/machine.txt, TMP/runs/{h2,h1}.SERVER.json (written by
bench/h2_load.mjs), TMP/commands.txt and the generated server configurations;
writes RESULTS_DIR/h2-DATE.md and h2-DATE.json (DATE: the run's UTC day).
"""

import json
import os
import statistics
import sys

from common import load_machine, write_code_block, write_details, write_json, write_machine, write_text

LABEL = {"h2": "HTTP/2", "h1": "HTTP/1.1"}


def load_series(tmp, http, server):
    """The {"reps": [...], "errors": [...]} of one series; None when it did not run."""
    try:
        with open(os.path.join(tmp, "runs", f"{http}.{server}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def same_or_range(values):
    """"N" when every repetition agrees, else "MIN-MAX" (counts should not vary)."""
    if not values:
        return "n/a"
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def summary(series):
    """The figures of one series: medians of time, counts as value or range."""
    reps = series["reps"] if series else []
    if not reps:
        return None
    walls = [r["wall_ms"] for r in reps]
    out = {
        "reps": len(reps),
        "failed_loads": len(series.get("errors", [])),
        "wall_ms_median": round(statistics.median(walls), 1),
        "wall_ms_min": round(min(walls), 1),
        "wall_ms_max": round(max(walls), 1),
        "load_ms_median": round(statistics.median(r["load_ms"] for r in reps), 1),
        "ws_ms_median": round(statistics.median(r["ws_ms"] for r in reps), 1),
        "tcp_connects": same_or_range([r["tcp_connects"] for r in reps]),
        "tls_handshakes": same_or_range([r["tls_handshakes"] for r in reps]),
        "established": same_or_range([r["established"] for r in reps]),
        "page_protocol": ",".join(sorted({r["page_protocol"] for r in reps})),
        "asset_protocols": ",".join(sorted({r["asset_protocols"] for r in reps})),
        "assets": same_or_range([r["assets"] for r in reps]),
        "ws_ok": same_or_range([r["ws_ok"] for r in reps]),
    }
    if all("wssd" in r for r in reps):
        for key in ("http2_connections", "ws_upgrades_h1", "ws_upgrades_h2"):
            out["wssd_" + key] = same_or_range([r["wssd"][key] for r in reps])
    return out


def main():
    tmp, results_dir = sys.argv[1], sys.argv[2]
    machine = load_machine(tmp)
    servers = machine.get("servers", "").split()
    table = {}
    for http in ("h2", "h1"):
        for server in servers:
            table[f"{http}.{server}"] = summary(load_series(tmp, http, server))

    day = machine.get("date", "?")[:10]
    lines = []
    w = lines.append
    w(f"# Page + 20 assets + 10 WebSockets over HTTP/2 and HTTP/1.1 ({day})")
    w("")
    w(f"Run {machine.get('date', '?')} on {machine.get('nproc', '?')} CPUs ({machine.get('cpu', '?')}); "
      f"{machine.get('wssd', '?')} ({machine.get('wssd_commit', '?')}), nginx {machine.get('nginx', '?')}, "
      f"Caddy {machine.get('caddy', '?')}, {machine.get('chromium', '?')}. "
      f"{machine.get('reps', '?')} loads per server and protocol, each by a fresh browser.")
    w("")
    w("| server | client offers | page / assets over | TCP connections | TLS handshakes | "
      "established at the end (ss) | WebSockets echoed | wall time, median (min-max) | "
      "of which page + assets | of which 10 WebSockets |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for server in servers:
        for http in ("h2", "h1"):
            s = table[f"{http}.{server}"]
            offers = "h2, http/1.1" if http == "h2" else "http/1.1"
            if s is None:
                w(f"| {server} | {offers} | n/a | | | | | failed | | |")
                continue
            w(f"| {server} | {offers} | {s['page_protocol']} / {s['asset_protocols']} | {s['tcp_connects']} | "
              f"{s['tls_handshakes']} | {s['established']} | {s['ws_ok']}/10 | "
              f"{s['wall_ms_median']:.0f} ms ({s['wall_ms_min']:.0f}-{s['wall_ms_max']:.0f}) | "
              f"{s['load_ms_median']:.0f} ms | {s['ws_ms_median']:.1f} ms |")
    w("")
    wssd_rows = [(http, table.get(f"{http}.wssd")) for http in ("h2", "h1")]
    if any(s and "wssd_http2_connections" in s for _, s in wssd_rows):
        w("wssd's own counters, growth per load: ")
        for http, s in wssd_rows:
            if s and "wssd_http2_connections" in s:
                w(f"- client offers {LABEL[http]}: wssd_http2_connections_total +{s['wssd_http2_connections']}, "
                  f"wssd_websocket_upgrades_total{{http=\"2\"}} +{s['wssd_ws_upgrades_h2']}, "
                  f"{{http=\"1.1\"}} +{s['wssd_ws_upgrades_h1']}")
        w("")
    failed = {k: v for k, v in table.items() if v and v["failed_loads"]}
    if failed:
        w("**Failed loads** (not in the figures): " +
          ", ".join(f"{k}: {v['failed_loads']}" for k, v in failed.items()))
        w("")
    w("Counts are exact (the browser's NetLog: TCP_CONNECT and SSL_CONNECT events; `ss` counts the "
      "server side's established connections to the port once the last echo arrived, before anything "
      "is closed). Wall time runs from navigation start to the last of the 30 echoes (the page's "
      "performance.now()); \"page + assets\" ends at the load event, \"10 WebSockets\" runs from it to the "
      "last echo (10 connects, each 3 echoes in turn, all 10 at once); medians of each part, so they need not "
      "add up to the total. The machine is shared and loopback has no latency, so times are indicative "
      "and a real network's round trips (one per extra TCP + TLS handshake) are not in them.")
    w("")
    w("## How it was set up")
    w("")
    write_machine(w, machine, ["date", "nproc", "cpu", "kernel", "wssd", "wssd_commit", "wssd_src_commit",
                               "wssd_binary", "nginx", "caddy", "chromium", "node", "reps", "server_cpus",
                               "client_cpus"])
    w("Commands (one series per line; `$TMP` is the temporary folder):")
    w("")
    write_code_block(w, os.path.join(tmp, "commands.txt"))
    w("")
    write_details(w, "nginx.conf", os.path.join(tmp, "nginx.conf.txt"), "nginx")
    write_details(w, "Caddyfile", os.path.join(tmp, "Caddyfile.txt"), "")
    os.makedirs(results_dir, exist_ok=True)
    write_text(os.path.join(results_dir, f"h2-{day}.md"), lines + [""])
    write_json(os.path.join(results_dir, f"h2-{day}.json"), {"machine": machine, "summary": table})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
