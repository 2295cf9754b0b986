#!/usr/bin/env python3
"""Heap bytes per connection by allocation site, from two DHAT runs.

    bench/dhat_diff.py SMALL.out LARGE.out N_SMALL N_LARGE [DEPTH]

Each file is `valgrind --tool=dhat --dhat-out-file=FILE wssd ...` with
N_SMALL / N_LARGE idle connections held (`wssd bench idle`). For every call
site it takes the bytes live at the heap's peak (DHAT's "t-gmax") and prints
(LARGE - SMALL) / (N_LARGE - N_SMALL): what one more connection holds, with
the process's fixed heap cancelled out. A site is named by its first DEPTH
frames (default 4) outside the standard library and the allocator.
"""
import json
import re
import sys
from collections import defaultdict

GENERIC = re.compile(r"<[^<>]*(<[^<>]*(<[^<>]*>[^<>]*)*>[^<>]*)*>")


def site(pp, ftbl, depth):
    frames = []
    for index in pp["fs"]:
        frame = re.sub(r"^0x[0-9A-F]+: ", "", ftbl[index])
        if not frames and ("vgpreload" in frame or "(library/" in frame
                           or "bytes_mut.rs" in frame or "bytes.rs:" in frame):
            continue
        frame = re.sub(r" \(.*/(src/[^)]*|[^/)]*)\)$", r" (\1)", frame)
        frames.append(GENERIC.sub("<..>", frame)[:110])
        if len(frames) >= depth:
            break
    return " <- ".join(frames) or "?"


def load(path, depth):
    data = json.load(open(path))
    sites = defaultdict(lambda: [0, 0])
    for pp in data["pps"]:
        entry = sites[site(pp, data["ftbl"], depth)]
        entry[0] += pp["gb"]
        entry[1] += pp["gbk"]
    total = sum(pp["gb"] for pp in data["pps"])
    blocks = sum(pp["gbk"] for pp in data["pps"])
    return sites, total, blocks


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    depth = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    small, small_total, small_blocks = load(sys.argv[1], depth)
    large, large_total, large_blocks = load(sys.argv[2], depth)
    n = int(sys.argv[4]) - int(sys.argv[3])
    print(f"heap at peak: {small_total} -> {large_total} bytes: "
          f"{(large_total - small_total) / n:.0f} B and "
          f"{(large_blocks - small_blocks) / n:.1f} blocks per connection")
    rows = []
    for key in set(small) | set(large):
        a, b = small.get(key, [0, 0]), large.get(key, [0, 0])
        rows.append(((b[0] - a[0]) / n, (b[1] - a[1]) / n, key))
    for per_conn, blocks, key in sorted(rows, reverse=True):
        if abs(per_conn) >= 16:
            print(f"{per_conn:8.0f} B {blocks:5.2f} blk  {key}")


if __name__ == "__main__":
    main()
