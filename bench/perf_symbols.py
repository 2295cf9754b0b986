#!/usr/bin/env python3
"""bench/perf_symbols.py: the flat profile of a `perf record` of wssd, with
wssd's own functions named.

Debian's perf 6.1 does not resolve symbols in wssd's release binary ("with
build id ... not found, continuing without symbols", even with the binary in
place and in the build-id cache) and prints bare addresses. This maps them
with `nm` (text segment: file offset + 0x1000 in a PIE built by rustc here;
read the offset from `readelf -l`, LOAD with flags R E, VirtAddr - Offset)
and sums the samples per function, kernel symbols kept as perf names them.

Usage: bench/perf_symbols.py WSSD_BINARY PERF_DATA [TOP] [--offset 0x1000]
Prints the kernel/user split, then the TOP (40) entries (self time, as
`perf report --no-children`).
"""

import argparse
import bisect
import collections
import re
import subprocess


def text_offset(binary):
    """VirtAddr - Offset of the executable LOAD segment."""
    out = subprocess.run(["readelf", "-l", "-W", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            return int(f[2], 16) - int(f[1], 16)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary")
    ap.add_argument("data")
    ap.add_argument("top", nargs="?", type=int, default=40)
    ap.add_argument("--offset", type=lambda s: int(s, 0), default=None)
    a = ap.parse_args()
    offset = text_offset(a.binary) if a.offset is None else a.offset
    syms = []
    nm = subprocess.run(["nm", "-C", "--defined-only", a.binary], capture_output=True, text=True, check=True)
    for line in nm.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), parts[2]))
    syms.sort()
    addrs = [s for s, _ in syms]
    report = subprocess.run(
        ["perf", "report", "-i", a.data, "--no-children", "--sort", "dso,sym", "--stdio", "-g", "none"],
        capture_output=True, text=True, check=True,
    ).stdout
    total = collections.Counter()
    split = collections.Counter()
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
        if not m:
            continue
        pct, dso, kind, sym = float(m[1]), m[2], m[3], m[4].strip()
        if kind == "k":
            name = "[kernel] " + sym
        elif sym.startswith("0x") and dso == a.binary.rsplit("/", 1)[-1][:len(dso)]:
            i = bisect.bisect_right(addrs, int(sym, 16) + offset) - 1
            name = re.sub(r"::h[0-9a-f]{16}$", "", syms[i][1]) if i >= 0 else sym
        else:
            name = f"[{dso}] {sym}"
        total[name[:140]] += pct
        split["kernel" if kind == "k" else "user"] += pct
    print(f"kernel {split['kernel']:.1f}%  user {split['user']:.1f}%")
    for name, pct in total.most_common(a.top):
        print(f"{pct:6.2f}%  {name}")


if __name__ == "__main__":
    main()
