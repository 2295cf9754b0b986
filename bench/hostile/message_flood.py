#!/usr/bin/env python3
"""bench/hostile/message_flood.py: clients flooding messages against the
per-WebSocket rate limit (issue 12 item 2).

Starts BINARY twice on 127.0.0.1 (state in a temporary folder): a backend
with an echo route, and a front with an echo route `/e` and a proxy route
`/p` to the backend, with `--message-rate RATE --message-burst BURST`. For
each of the two routes:

- a well-behaved client sends one message every 20 ms (50/s) and times each
  echo, first alone for SECONDS/2, then during the flood;
- FLOODERS clients (one process each, so they do not slow the measuring
  client's event loop), for SECONDS, each connect, send small text messages
  as fast as the socket takes them while counting the echoes (the messages
  the server admitted; on the proxy route, what came back through the
  upstream before the close), until the server closes them, then connect
  again.

Prints one line per figure: messages admitted before the close vs sent, the
close codes and reason, the time from the first message to the close, and
the well-behaved client's echo latency (p50/p99) alone and during the flood.
Stops both servers by their PIDs. Bounded: FLOODERS + 1 sockets, SECONDS per
route, loopback only.

Usage: bench/hostile/message_flood.py BINARY [--flooders 4] [--seconds 3]
       [--rate 100] [--burst 200]     (--rate 0: the same flood without a limit)
Needs: Python 3.10+, websockets >= 13.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary: str, workdir: str, name: str, args: list[str]) -> tuple[subprocess.Popen, int, int]:
    http_port, admin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSD_")}
    cmd = [binary, "serve", "--tls", "off", "--http", f"127.0.0.1:{http_port}",
           "--admin", f"127.0.0.1:{admin_port}", "--state-dir", os.path.join(workdir, name), *args]
    log = open(os.path.join(workdir, f"{name}.log"), "wb")
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"wssd exited with status {proc.returncode}; see {workdir}/{name}.log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, http_port, admin_port
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit(f"wssd ({name}) was not ready within 20 s")


def ws(url: str):
    return connect(url, compression=None, open_timeout=5, close_timeout=2, max_size=1 << 20)


async def well_behaved(url: str, seconds: float) -> list[float]:
    """Echo round trips in ms, one message every 20 ms."""
    times = []
    async with ws(url) as c:
        until = time.monotonic() + seconds
        i = 0
        while time.monotonic() < until:
            i += 1
            sent = time.perf_counter()
            await c.send(f"calm {i}")
            while await c.recv() != f"calm {i}":
                pass
            times.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(0.02)
    return times


async def flood_once(url: str, until: float) -> dict:
    """One connection flooding until the server closes it (or time is up)."""
    async with ws(url) as c:
        admitted = 0

        async def read():
            nonlocal admitted
            try:
                async for _ in c:
                    admitted += 1
            except ConnectionClosed:
                pass

        reader = asyncio.create_task(read())
        sent = 0
        first = time.perf_counter()
        try:
            while not reader.done() and time.monotonic() < until:
                await c.send("flood")
                sent += 1
                if sent % 64 == 0:
                    await asyncio.sleep(0)  # let the reader see the close
        except ConnectionClosed:
            pass
        if not reader.done():
            await c.close()
        await reader
        took = time.perf_counter() - first
        return {"sent": sent, "admitted": admitted, "ms": took * 1000,
                "code": c.close_code, "reason": c.close_reason}


async def flooder(url: str, until: float, results: list[dict]) -> None:
    while time.monotonic() < until:
        try:
            results.append(await flood_once(url, until))
        except (OSError, InvalidStatus, asyncio.TimeoutError):
            await asyncio.sleep(0.05)


def flooder_process(url: str, seconds: float, out) -> None:
    results: list[dict] = []
    asyncio.run(flooder(url, time.monotonic() + seconds, results))
    out.put(results)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def upstream_messages(admin_port: int | None) -> float:
    """Messages the proxy's upstream received (its wssd_messages_total in)."""
    if admin_port is None:
        return 0.0
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    conn.request("GET", "/metrics")
    for line in conn.getresponse().read().decode().splitlines():
        if line.startswith('wssd_messages_total{route="/ws",direction="in"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def run_route(label: str, url: str, flooders: int, seconds: float,
                    upstream_admin: int | None) -> None:
    alone = await well_behaved(url, seconds / 2)
    upstream_before = upstream_messages(upstream_admin)
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=flooder_process, args=(url, seconds, out))
             for _ in range(flooders)]
    for p in procs:
        p.start()
    during = await well_behaved(url, seconds)
    results: list[dict] = []
    for _ in procs:
        results.extend(out.get(timeout=seconds + 30))
    for p in procs:
        p.join(10)
    upstream_got = upstream_messages(upstream_admin) - upstream_before - len(during)
    sent = sum(r["sent"] for r in results)
    admitted = sum(r["admitted"] for r in results)
    codes: dict[str, int] = {}
    for r in results:
        # 1000: the window ended first and the client closed.
        key = str(int(r["code"])) if r["code"] is not None else "none"
        codes[key] = codes.get(key, 0) + 1
    reasons = sorted({r["reason"] for r in results if r["reason"]})
    ms = [r["ms"] for r in results]
    print(f"{label}: flood admitted {admitted} of {sent} messages sent "
          f"({100 * admitted / max(sent, 1):.1f} %) over {len(results)} connections, "
          f"{admitted / max(len(results), 1):.0f} per connection; closes by code {codes}; "
          f"reason {reasons}")
    if upstream_admin is not None:
        print(f"{label}: the upstream received {upstream_got:.0f} flood messages "
              f"({upstream_got / max(len(results), 1):.0f} per connection; the echoes above are those "
              f"that came back before the close)")
    print(f"{label}: time from first message to the close p50 {statistics.median(ms):.0f} ms, "
          f"max {max(ms):.0f} ms" if ms else f"{label}: no flood connection finished")
    print(f"{label}: well-behaved client echo p50 {pct(during, 50):.2f} ms, p99 {pct(during, 99):.2f} ms "
          f"during the flood ({len(during)} echoes); alone p50 {pct(alone, 50):.2f} ms, "
          f"p99 {pct(alone, 99):.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--flooders", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--burst", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="wssd-flood-") as workdir:
        procs = []
        try:
            back, back_port, back_admin = start(args.binary, workdir, "backend", ["--route", "/ws=echo"])
            procs.append(back)
            rates = ["--message-rate", str(args.rate), "--message-burst", str(args.burst)]
            front, port, _ = start(args.binary, workdir, "front", [
                "--route", "/e=echo", "--route", f"/p=proxy:ws://127.0.0.1:{back_port}/ws",
                *(rates if args.rate else [])])
            procs.append(front)
            limit = " ".join(rates) if args.rate else "no rate limit"
            print(f"{limit}, {args.flooders} flooders for {args.seconds:.0f} s per route [{args.binary}]")
            for label, path, upstream in (("echo", "/e", None), ("proxy", "/p", back_admin)):
                asyncio.run(run_route(label, f"ws://127.0.0.1:{port}{path}", args.flooders,
                                      args.seconds, upstream))
        finally:
            for proc in procs:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    main()
