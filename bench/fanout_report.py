#!/usr/bin/env python3
"""bench/fanout_report.py TMP OUT_MD: turns the runs of bench/fanout.sh into a
Markdown report.

TMP holds machine.txt, commands.txt and runs/NAME.{json,meta,err} where NAME
is TOPOLOGY-SUBSCRIBERS-RATE and the .json is the output of
`wssd bench fanout --json` (or {"failed":true}). What it shares with the
other reports (loading, formatting) is in bench/common.py.
"""

import glob
import json
import os
import sys

from common import compact_json, fmt, load_kv, read_lines, write_text

SETUP = {"single": "1 instance", "redis": "2 instances + Redis"}


def load_runs(tmp):
    runs = []
    for meta_path in glob.glob(os.path.join(tmp, "runs", "*.meta")):
        base = meta_path[: -len(".meta")]
        meta = load_kv(meta_path, " ")
        try:
            with open(base + ".json") as f:
                result = json.loads(f.read().strip() or "{}")
        except (OSError, ValueError):
            result = {"failed": True}
        if result.get("mode") != "fanout":
            result = {"failed": True}
        err = ""
        try:
            with open(base + ".err") as f:
                err = f.read().strip()
        except OSError:
            pass
        runs.append({"name": os.path.basename(base), "meta": meta, "result": result, "err": err})
    order = {"single": 0, "redis": 1}
    runs.sort(key=lambda r: (order.get(r["meta"].get("topology"), 9),
                             int(r["meta"].get("subs", 0)), int(r["meta"].get("rate", 0))))
    return runs


def num(meta, key):
    try:
        return float(meta[key])
    except (KeyError, ValueError):
        return None


def mib(kib):
    return None if kib is None else kib / 1024


def closes_text(r):
    closes = r.get("closes") or {}
    if not closes:
        return "0"
    return ", ".join(f"{n} x {code}" for code, n in sorted(closes.items()))


def rss_text(meta):
    a, b = mib(num(meta, "hwm_a")), mib(num(meta, "hwm_b"))
    if b is None:
        return fmt(a, 1)
    return f"{fmt(a, 1)} (A) / {fmt(b, 1)} (B)"


def cpu_secs(meta, key):
    ticks, tck = num(meta, key), num(meta, "clk_tck")
    if ticks is None or not tck:
        return None
    return ticks / tck


def other_cores(meta, ours):
    """Cores' worth of CPU used by processes other than this run's during the
    run: whole-machine busy time minus the servers', redis's and the client's."""
    busy, tck, wall = num(meta, "machine_busy"), num(meta, "clk_tck"), num(meta, "wall")
    if busy is None or not tck or not wall:
        return None
    own = sum(x for x in ours if x is not None)
    return max(0.0, (busy / tck - own) / wall)


def main():
    tmp, out_md = sys.argv[1], sys.argv[2]
    machine = load_kv(os.path.join(tmp, "machine.txt"), "=")
    runs = load_runs(tmp)
    lines = []
    add = lines.append
    add(f"# wssd broadcast fan-out, {machine.get('date', '?')}")
    add("")
    add(f"`bench/fanout.sh`: `wssd bench fanout` against `--route /ws/news=broadcast` over wss:// "
        f"(self-signed TLS, TLS 1.3) on loopback; {machine.get('size', '?')}-byte binary messages, "
        f"{machine.get('secs', '?')} s of sending per run, fresh server process(es) for every run. "
        "Latency is publisher send to subscriber receive, both read from the bench process's clock.")
    add("")
    add("| setup | subscribers | rate (msg/s) | offered deliveries/s | deliveries/s | p50 ms | p99 ms | max ms | lost | closes | peak RSS wssd (MiB) |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for run in runs:
        m, r = run["meta"], run["result"]
        setup = SETUP.get(m.get("topology"), m.get("topology", "?"))
        subs, rate = num(m, "subs"), num(m, "rate")
        offered = subs * rate if subs is not None and rate is not None else None
        if r.get("failed"):
            add(f"| {setup} | {fmt(subs)} | {fmt(rate)} | {fmt(offered)} | failed | n/a | n/a | n/a | n/a | n/a | {rss_text(m)} |")
            continue
        add(f"| {setup} | {fmt(r['subscribers'])} | {fmt(r['rate'])} | {fmt(offered)} | "
            f"{fmt(r['deliveries_per_sec'])} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | "
            f"{fmt(r['max_ms'], 2)} | {fmt(r['lost'])} | {closes_text(r)} | {rss_text(m)} |")
    add("")
    if machine.get("redis_note"):
        add(f"**{machine['redis_note']}**")
        add("")

    add("## Details")
    add("")
    add("| run | connected | connect s | warm-up s | sent | send rate | publisher behind schedule (max ms) | expected | received | stragglers wait s | server CPU s (A / B) | redis CPU s | bench client CPU s | slow-consumer drops (metric) | client RSS MiB | other work on the machine (cores) | load avg |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---|")
    for run in runs:
        m, r = run["meta"], run["result"]
        cpu_a, cpu_b = cpu_secs(m, "cpu_a"), cpu_secs(m, "cpu_b")
        cpu = fmt(cpu_a, 1) + ("" if cpu_b is None else f" / {fmt(cpu_b, 1)}")
        drops = m.get("dropped_a", "n/a") + ("" if "dropped_b" not in m else f" / {m['dropped_b']}")
        redis_cpu = cpu_secs(m, "cpu_redis")
        client_cpu = num(m, "client_cpu")
        others = other_cores(m, [cpu_a, cpu_b, redis_cpu, client_cpu])
        if r.get("failed"):
            add(f"| {run['name']} | failed | | | | | | | | | {cpu} | {fmt(redis_cpu, 1)} | {fmt(client_cpu, 1)} | {drops} | | {fmt(others, 2)} | {m.get('loadavg', '')} |")
            continue
        add(f"| {run['name']} | {r['connected']}/{r['subscribers']} | {fmt(r['connect_secs'], 2)} | "
            f"{fmt(r['warmup_secs'], 2)} | {fmt(r['sent'])} | {fmt(r['send_rate'], 1)} | "
            f"{fmt(r['max_send_lag_ms'], 1)} | {fmt(r['expected'])} | {fmt(r['received'])} | "
            f"{fmt(r['drain_secs'], 2)} | {cpu} | {fmt(redis_cpu, 1)} | {fmt(client_cpu, 1)} | {drops} | "
            f"{fmt(mib(r.get('client_rss_kib')), 0)} | {fmt(others, 2)} | {m.get('loadavg', '')} |")
    add("")
    add("## Reading it")
    add("")
    add("- **Rates**: for each subscriber count the lowest rate is the baseline (one burst of deliveries at a time, nothing queued behind it); the higher rates offer 100,000 and 200,000 deliveries/s. Latency that grows with the rate compared with the baseline is queueing; latency near the baseline means the server kept up. Compare the CPU columns to see how close to the machine's limit a run was.")
    add("- **offered deliveries/s** = subscribers x rate; **deliveries/s** = deliveries received over the "
        "time from the first measured send to the last delivery. When the two agree, lost is 0 and "
        "there are no closes, the server kept up with that rate.")
    add("- **lost** = messages sent x subscribers that had received a warm-up message, minus deliveries "
        "received (after waiting up to 10 s for stragglers). **closes** are subscriber connections the "
        "server ended, by close code; 1008 is wssd's slow-consumer close (its 1024-message queue per "
        "subscriber overflowed), and the `slow-consumer drops` column is wssd's own "
        "`wssd_subscribers_dropped_total` for the run.")
    add("- Each message is written to every subscriber at once, so a burst of N deliveries "
        "leaves the server back to back: p50 is roughly the time to reach half the subscribers, and p99 "
        "the time to reach nearly all of them. With 10,000 subscribers one message is 10,000 TLS "
        "records.")
    add("- Server, bench client and (for the Redis runs) redis-server share the same "
        f"{machine.get('nproc', '?')} cores, unpinned; the client decrypts as many TLS records as the "
        "server encrypts. The CPU columns cover the whole run (TLS handshakes included); "
        "people's work: `other work on the machine` is the CPU the whole machine used during the run "
        "minus what this run's processes used (servers, redis-server, bench client), in cores; "
        "anything well above 0 means the latencies of that row are disturbed.")
    add("- Peak RSS is VmHWM of each wssd process over the whole run (connections, TLS state, queues).")
    add("")
    add("## Result lines")
    add("")
    for run in runs:
        r = run["result"]
        if r.get("failed"):
            add(f"- {run['name']}: failed: `{run['err'][-400:]}`")
        else:
            add(f"- {run['name']}: `{compact_json(r)}`")
    add("")
    add("## Commands")
    add("")
    add("```")
    lines.extend(read_lines(os.path.join(tmp, "commands.txt")))
    add("```")
    add("")
    add("## Machine")
    add("")
    for key in ["date", "nproc", "cpu", "mem", "kernel", "wssd", "commit", "redis", "runs", "secs", "size"]:
        if key in machine:
            add(f"- {key}: {machine[key]}")
    add("")
    write_text(out_md, lines)


if __name__ == "__main__":
    main()
