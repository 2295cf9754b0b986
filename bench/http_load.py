#!/usr/bin/env python3
"""bench/http_load.py: plain-HTTP request rate on loopback, for
bench/access-log.sh (no wrk on the machine).

Usage: http_load.py PORT PATH SECS [CONNS] [DEPTH]

CONNS connections (default 4) each send DEPTH (default 32) pipelined
keep-alive GETs of PATH, read the DEPTH responses (counted by their status
lines), and repeat for SECS seconds. Prints one JSON object: requests,
seconds, requests_per_s, non_200. Bounded: loopback only, SECS at most 60.
"""
import asyncio
import json
import sys
import time


async def worker(port, path, deadline, depth, totals):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    batch = (f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n" * depth).encode()
    try:
        while time.monotonic() < deadline:
            writer.write(batch)
            seen, tail, ok = 0, b"", 0
            while seen < depth:
                chunk = await asyncio.wait_for(reader.read(1 << 16), 10)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                data = tail + chunk
                seen += data.count(b"HTTP/1.1 ")
                ok += data.count(b"HTTP/1.1 200")
                tail = data[-11:]
                # Do not count a status line twice across the carried tail.
                seen -= tail.count(b"HTTP/1.1 ")
                ok -= tail.count(b"HTTP/1.1 200")
            totals["requests"] += seen
            totals["non_200"] += seen - ok
    finally:
        writer.close()


async def main():
    port, path, secs = int(sys.argv[1]), sys.argv[2], min(float(sys.argv[3]), 60.0)
    conns = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    depth = int(sys.argv[5]) if len(sys.argv) > 5 else 32
    totals = {"requests": 0, "non_200": 0}
    start = time.monotonic()
    await asyncio.gather(
        *(worker(port, path, start + secs, depth, totals) for _ in range(conns))
    )
    took = time.monotonic() - start
    totals["seconds"] = round(took, 3)
    totals["requests_per_s"] = round(totals["requests"] / took, 1)
    print(json.dumps(totals))


asyncio.run(main())
