"""bench/common.py: what the report scripts of bench/ share (report.py for
bench/run.sh, proxy_report.py for bench/proxy.sh, fanout_report.py for
bench/fanout.sh): reading the files the shell scripts leave in their temporary
folder, number and ratio formatting, CPU shares, and the Markdown pieces more
than one report writes. Imported, not run.
"""

import json
import os


def load_kv(path, sep):
    """KEY<sep>VALUE lines of `path` as a dict (lines without a key skipped; {} when unreadable)."""
    info = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition(sep)
                if key:
                    info[key] = value
    except OSError:
        pass
    return info


def load_machine(tmp):
    """TMP/machine.txt (KEY=VALUE lines written by the shell script) as a dict."""
    return load_kv(os.path.join(tmp, "machine.txt"), "=")


def read_lines(path):
    """The lines of `path` without their newlines; [] when it cannot be read."""
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f]
    except OSError:
        return []


def load_run(tmp, name, server):
    """(result, cpu) of TMP/runs/NAME.SERVER: `result` is the final JSON line of
    `wssd bench` ({"failed": True} for a failed or foreign line, None when not
    run); `cpu` the "KEY NUMBER" lines of the .cpu file as floats ({} when
    missing or unreadable)."""
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
    """True for a run result that exists and did not fail."""
    return run is not None and not run.get("failed")


def result_value(runs, name, server, key):
    """`key` of the result of run (name, server) in `runs` (values: (result, ...)); None when it failed."""
    run = runs[(name, server)][0]
    if not ok(run):
        return None
    return run.get(key)


def errors_total(runs, names, server):
    """Errors summed over the successful runs `names` of `server`; None when none succeeded."""
    total, any_run = 0, False
    for name in names:
        run = runs[(name, server)][0]
        if ok(run):
            total += run.get("errors", 0)
            any_run = True
    return total if any_run else None


def fmt(value, decimals=0):
    """`value` with thousands separators and `decimals` decimals; "n/a" for None."""
    if value is None:
        return "n/a"
    if decimals == 0:
        return f"{value:,.0f}"
    return f"{value:,.{decimals}f}"


def ratio_value(wssd, other, higher_is_better):
    """How many times better wssd is than `other` (None when either is missing or the divisor is <= 0)."""
    if wssd is None or other is None:
        return None
    num, den = (wssd, other) if higher_is_better else (other, wssd)
    if den <= 0:
        return None
    return num / den


def fmt_ratio(value):
    """A ratio as "1.23x", "n/a" for None."""
    return "n/a" if value is None else f"{value:.2f}x"


def kib_per_conn(pids, open_):
    """RSS growth of the `pids` entries ({before_kib, after_kib}) per open connection; None for no entries."""
    if not pids:
        return None
    return sum(p["after_kib"] - p["before_kib"] for p in pids) / open_


def cpu_pct(cpu, group):
    """Share of one core (%) process group `group` used over the run's wall time; None when not recorded."""
    if not cpu or group not in cpu or not cpu.get("wall") or not cpu.get("clk_tck"):
        return None
    return 100.0 * cpu[group] / cpu["clk_tck"] / cpu["wall"]


def machine_and_other_cores(run, cpu, machine, servers_pct, client):
    """(cores the whole machine used during the run, cores used by processes
    other than the servers (`servers_pct`, % of one core) and the client
    (`client`, cores)); either is None when not measured."""
    machine_cores = None
    if cpu.get("machine_total"):
        machine_cores = cpu["machine_busy"] / cpu["machine_total"] * float(machine.get("nproc", 1))
    other = None
    if machine_cores is not None and client is not None and servers_pct is not None:
        # The client figure covers the measured seconds only, the others the whole wall time.
        share = min(1.0, float(run.get("secs", 0)) / cpu["wall"]) if cpu.get("wall") else 1.0
        other = max(0.0, machine_cores - servers_pct / 100 - client * share)
    return machine_cores, other


def run_header(machine, versions):
    """The report's opening sentence: when, on what machine, `versions` (text), seconds per run."""
    return (f"Run {machine.get('date', '?')} on {machine.get('nproc', '?')} CPUs ({machine.get('cpu', '?')}), "
            f"{machine.get('kernel', '?')}, {machine.get('mem', '?')} RAM. "
            f"{versions} "
            f"{machine.get('secs', '?')} s per throughput run"
            f"{' (--quick)' if machine.get('quick') == '1' else ''}.")


def compact_json(value):
    """`value` as JSON without spaces (for result lines in Markdown)."""
    return json.dumps(value, separators=(",", ":"))


def write_noisy_note(w, noisy):
    """The warning about runs disturbed by other processes (nothing when `noisy` is empty)."""
    if noisy:
        w(f"**Other processes used CPU during {', '.join(noisy)}**: those numbers are disturbed; "
          "rerun on an idle machine.")
        w("")


def write_runs_table(w, runs, names, servers):
    """The "## Runs" section: one row per run and server with its errors, TLS and result line."""
    w("## Runs")
    w("")
    w("| run | server | errors | negotiated TLS | result line |")
    w("|---|---|---:|---|---|")
    for name in names:
        for server in servers:
            run = runs[(name, server)][0]
            if run is None:
                w(f"| {name} | {server} | n/a | | not run |")
            elif not ok(run):
                w(f"| {name} | {server} | n/a | | failed: see the log kept with BENCH_KEEP=1 |")
            else:
                w(f"| {name} | {server} | {run.get('errors', 0)} | {run.get('tls') or ''} | "
                  f"`{compact_json(run)}` |")
    w("")


def write_method_notes(w):
    """The last bullets of "How it was set up": how latency is measured, and what one run is worth."""
    w("- Latencies are closed-loop (each connection sends its next message when the echo of the "
      "previous one arrives): round-trip times at full load, not latency at a fixed request rate.")
    w("- Loopback only, one run: differences of a few percent are noise; rerun before concluding.")
    w("")


def write_measured_with(w, tmp):
    """"and measured with:" and the `wssd bench` commands of TMP/commands.txt as a code block."""
    w("and measured with:")
    w("")
    write_code_block(w, os.path.join(tmp, "commands.txt"))
    w("")


def write_machine(w, machine, keys):
    """A "- key: value" line per key ("?" when missing)."""
    for key in keys:
        w(f"- {key}: {machine.get(key, '?')}")
    w("")


def write_code_block(w, path, lang=""):
    """The lines of `path` in a fenced code block (empty when it cannot be read)."""
    w(f"```{lang}")
    for line in read_lines(path):
        w(line)
    w("```")


def write_details(w, title, path, lang):
    """A collapsed <details> block with the file at `path` as code, when it exists."""
    if not os.path.exists(path):
        return
    w(f"<details><summary>{title}</summary>")
    w("")
    write_code_block(w, path, lang)
    w("</details>")
    w("")


def write_text(path, lines):
    """`lines` joined with newlines (no final newline), to `path`."""
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_json(path, value):
    """`value` as indented JSON with a final newline, to `path`."""
    with open(path, "w") as f:
        json.dump(value, f, indent=1)
        f.write("\n")
