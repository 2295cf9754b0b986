#!/usr/bin/env python3
"""bench/floor_report.py: the report of bench/floor.sh.

Reads TMP/runs/NAME.SERVER.{json,cpu,profile} (the `wssd bench` result, the
server's CPU ticks around the run, `perf report --sort dso,sym` of the
server) and writes RESULTS/floor-latest.md and floor-latest.json: per run and
server, the CPU per operation split into kernel, crypto (aws-lc), memory
(glibc malloc and copies) and other user space, and for each of issue 16's
targets the best wssd/naive ratio that is reachable when only wssd's own
memory and other parts could shrink.

Usage: bench/floor_report.py TMP RESULTS
"""

import json
import os
import re
import sys

from common import (fmt, fmt_ratio, load_machine, load_run, ok, read_lines, run_header, write_code_block,
                    write_json, write_text)

CLASSES = ("kernel", "crypto", "memory", "other")
# aws-lc's functions (its C and assembly with their local labels, its static helpers such as the
# DRBG and Keccak, and the Rust bindings: aws-lc-rs and rustls' provider over it), as perf names them.
CRYPTO = re.compile(
    r"aws_lc|^_*L[a-z]|ecp_nistz|nistz256|mlkem|mlk_|curve25519|x25519|bignum_|[Kk]eccak|_aesni|aes_hw"
    r"|gcm_|ghash|sha(1|256|512|3)_|SHA(1|256|384|512)_|jent_|p256_|poly1305|chacha|rand_bytes|drbg"
    r"|rdrand|(^|[^a-z])(evp|EVP|bn|BN|ec|EC|RAND|CRYPTO|HMAC|HKDF|ED25519|OPENSSL)_|skip_iv")
MEMORY = re.compile(r"^(__)?(mem(move|cpy|set)|_?_?int_(malloc|free|realloc)|c?free|malloc|realloc"
                    r"|unlink_chunk|malloc_consolidate|tcache)")
LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)")

# (run, what is counted, scale, label, target ratio, target text)
TARGETS = (
    ("echo64", "round_trips", 1, "64 B echo, 100 conns, 1 in flight", 1.5, ">= 1.5x the naive"),
    ("echo16k", "round_trips", 1, "16 KiB binary echo, 10 conns", 1.45, ">= 1.45x the naive"),
    ("connect", "connects", 1, "connects (TCP + TLS 1.3 + upgrade + echo + close)", 1.33, ">= 1.33x the naive"),
)


def classify(profile_path):
    """Shares (fractions summing to 1) of kernel, crypto, memory and other in a perf report; None when empty."""
    shares = dict.fromkeys(CLASSES, 0.0)
    try:
        with open(profile_path) as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        pct, _dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        if kind == "k":
            shares["kernel"] += pct
        elif CRYPTO.search(sym):
            shares["crypto"] += pct
        elif MEMORY.search(sym):
            shares["memory"] += pct
        else:
            shares["other"] += pct
    total = sum(shares.values())
    if total <= 0:
        return None
    return {k: v / total for k, v in shares.items()}


def split(tmp, name, server, count_key):
    """{total, kernel, crypto, memory, other} in microseconds of server CPU per operation; None when not measured."""
    run, cpu = load_run(tmp, name, server)
    shares = classify(os.path.join(tmp, "runs", f"{name}.{server}.profile"))
    if not ok(run) or not run.get(count_key) or not cpu.get("clk_tck") or not cpu.get("server") or shares is None:
        return None
    total = cpu["server"] / cpu["clk_tck"] / run[count_key] * 1e6
    out = {"total": total}
    out.update({k: total * shares[k] for k in CLASSES})
    out["kernel_from_stat"] = cpu.get("server_sys", 0) / cpu["clk_tck"] / run[count_key] * 1e6
    return out


def fanout_split(tmp, rate):
    """At `rate` msg/s: server and client CPU per delivery (microseconds, split like `split`) and the
    burst floor; None when not run."""
    base = os.path.join(tmp, "runs", f"fanout-{rate}")
    cpu = {}
    for line in read_lines(base + ".cpu"):
        key, _, value = line.partition(" ")
        try:
            cpu[key] = float(value)
        except ValueError:
            pass
    try:
        with open(base + ".json") as f:
            result = json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        result = None
    if not cpu.get("clk_tck") or not cpu.get("deliveries_per_sec") or not cpu.get("window"):
        return None
    deliveries = cpu["deliveries_per_sec"] * cpu["window"]
    out = {"subscribers": int(cpu.get("subscribers", 0)), "cores": int(cpu.get("cores", 1)), "rate": rate,
           "result": result}
    for who in ("server", "client"):
        shares = classify(f"{base}.{who}.profile")
        if shares is None or who not in cpu:
            return None
        total = cpu[who] / cpu["clk_tck"] / deliveries * 1e6
        out[who] = {"total": total, **{k: total * shares[k] for k in CLASSES}}
    floor_us = sum(out[w]["kernel"] + out[w]["crypto"] for w in ("server", "client"))
    now_us = out["server"]["total"] + out["client"]["total"]
    out["burst_floor_ms"] = out["subscribers"] * floor_us / out["cores"] / 1000
    out["burst_cpu_ms"] = out["subscribers"] * now_us / out["cores"] / 1000
    return out


def main():
    tmp, results = sys.argv[1], sys.argv[2]
    machine = load_machine(tmp)
    splits = {}
    for name, key, *_ in TARGETS:
        for server in ("wssd", "naive", "wssd-ws"):
            s = split(tmp, name, server, key)
            if s is not None:
                splits[f"{name}.{server}"] = s

    rows, verdicts = [], []
    for name, _key, _scale, label, target, target_text in TARGETS:
        w, n = splits.get(f"{name}.wssd"), splits.get(f"{name}.naive")
        if not w or not n:
            verdicts.append((label, None, None, None, target_text, "not measured"))
            continue
        now = n["total"] / w["total"]
        best = n["total"] / (w["kernel"] + w["crypto"])
        # The share of wssd's memory + other time that must go to reach the target.
        need = w["total"] - n["total"] / target
        cut = need / (w["memory"] + w["other"]) if need > 0 else 0.0
        verdict = ("met now" if now >= target else
                   "above the floor: unreachable here" if best < target else
                   f"needs {cut:.0%} of wssd's memory + other time removed")
        verdicts.append((label, now, best, cut, target_text, verdict))
    # TLS cost: wss/ws round trips per CPU-second at 64 B x 1.
    wss, ws = splits.get("echo64.wssd"), splits.get("echo64.wssd-ws")
    if wss and ws:
        now = ws["total"] / wss["total"]
        extra_floor = max(0.0, wss["kernel"] - ws["kernel"]) + wss["crypto"]
        best = ws["total"] / (ws["total"] + extra_floor)
        need = wss["total"] - ws["total"] / 0.9
        tls_other = max(1e-9, wss["total"] - ws["total"] - extra_floor)
        cut = need / tls_other if need > 0 else 0.0
        verdict = ("met now" if now >= 0.9 else
                   "above the floor: unreachable here" if best < 0.9 else
                   f"needs {cut:.0%} of what TLS adds beyond its kernel and crypto time removed")
        verdicts.append(("TLS cost, wss/ws at 64 B x 1", now, best, cut, ">= 0.9", verdict))

    for key, s in splits.items():
        rows.append((key, s))
    fans = [f for f in (fanout_split(tmp, 2), fanout_split(tmp, 20)) if f is not None]
    for fan in fans:
        p99 = (fan["result"] or {}).get("p99_ms")
        # Over 50 ms of CPU per burst (on all cores) and the bursts of a 20 msg/s run queue.
        cut = (fan["burst_cpu_ms"] - 50) / max(1e-9, fan["burst_cpu_ms"] - fan["burst_floor_ms"])
        verdict = ("above the floor: unreachable here" if fan["burst_floor_ms"] > 50 else
                   "the floor allows it" if fan["burst_cpu_ms"] <= 50 else
                   f"needs {cut:.0%} of the server's and the client's memory + other time removed "
                   "for a burst to fit in 50 ms, with every core busy")
        verdicts.append((f"fan-out p99, {fan['subscribers']:,} subscribers at {fan['rate']} msg/s (a burst: "
                         f"p99 {fmt(p99, 1)} ms, all CPU {fmt(fan['burst_cpu_ms'], 0)} ms, "
                         f"floor {fmt(fan['burst_floor_ms'], 0)} ms over {fan['cores']} cores)",
                         None, None, None, "p99 <= 50 ms", verdict))
        rows.append((f"fanout {fan['rate']} msg/s.server (per delivery)", fan["server"]))
        rows.append((f"fanout {fan['rate']} msg/s.client (per delivery)", fan["client"]))

    lines = []
    w = lines.append
    w("# Where the server's CPU goes per operation, and the floor")
    w("")
    w(run_header(machine, f"wssd {machine.get('wssd', '?')}; {machine.get('perf', '?')}."))
    w("")
    w("Server pinned to one core, `wssd bench` on the other, as in bench/run.sh. CPU per operation is "
      "the server's CPU time over the whole run divided by the operations; its split is the share of "
      "`perf record` samples (1999 Hz, the middle of the run) in each part. **floor** = kernel + crypto. "
      "**best reachable** = the naive's CPU per operation over wssd's floor: the ratio wssd would reach "
      "if everything it does in user space apart from aws-lc cost nothing.")
    w("")
    w("## The targets against the floor")
    w("")
    w("| target | wssd/naive now | best reachable | target | verdict |")
    w("|---|---:|---:|---|---|")
    for label, now, best, _cut, target_text, verdict in verdicts:
        w(f"| {label} | {fmt_ratio(now) if now is not None else 'n/a'} | "
          f"{fmt_ratio(best) if best is not None else 'n/a'} | {target_text} | {verdict} |")
    w("")
    w("## CPU per operation, microseconds")
    w("")
    w("| run | server | total | kernel | crypto | memory | other | floor | kernel (from /proc) |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, s in rows:
        name, server = key.split(".", 1)
        w(f"| {name} | {server} | {fmt(s['total'], 2)} | {fmt(s['kernel'], 2)} | {fmt(s['crypto'], 2)} | "
          f"{fmt(s['memory'], 2)} | {fmt(s['other'], 2)} | {fmt(s['kernel'] + s['crypto'], 2)} | "
          f"{fmt(s.get('kernel_from_stat'), 2)} |")
    w("")
    if fans:
        w("Fan-out: CPU per delivery (the last rows; no /proc kernel figure), counted against the "
          "deliveries offered (subscribers x rate: when the server falls behind, fewer were made and "
          "the real cost per delivery is higher). A burst's floor is subscribers x (server + client "
          "kernel and crypto per delivery) / cores: the time the last subscriber must wait even if "
          "both sides' other user-space work cost nothing and every core worked on the burst. At "
          "20 msg/s a burst must also end within 50 ms or the next one queues behind it.")
        w("")
    w("- kernel: perf's kernel samples (system calls, the loopback TCP path, which on loopback also "
      "carries the receiver's processing, and wake-ups). The last column is the same from "
      "/proc/PID/stat's stime, over the whole run.")
    w("- crypto: aws-lc (AES-GCM, X25519, ML-KEM-768, P-256, SHA-2, SHA-3, HKDF); both servers use it "
      "through rustls with the same certificate and groups.")
    w("- memory: glibc's malloc, free and realloc, and memcpy, memmove and memset.")
    w("- other: every other user-space function (rustls' record and handshake logic, tungstenite, "
      "hyper, tokio, the server's own code).")
    w("")
    w("## How it was measured")
    w("")
    write_code_block(w, os.path.join(tmp, "commands.txt"))
    w("")
    write_text(os.path.join(results, "floor-latest.md"), lines)
    write_json(os.path.join(results, "floor-latest.json"), {
        "machine": machine,
        "per_operation_us": splits,
        "fanout": fans,
        "targets": [dict(zip(("target", "now", "best_reachable", "cut_needed", "goal", "verdict"), v))
                    for v in verdicts],
    })


if __name__ == "__main__":
    main()
