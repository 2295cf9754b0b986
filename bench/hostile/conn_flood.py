#!/usr/bin/env python3
"""bench/hostile/conn_flood.py: a flood of new connections from one address
against --connection-rate-per-ip (issue 12 items 2 and 3).

Starts BINARY (`wssd serve --tls off` with a plain listener on 127.0.0.1,
--connection-rate-per-ip RATE, state in a temporary folder, log to a file),
then for SECONDS opens new TCP connections from 127.0.0.1 as fast as
CONCURRENCY workers can, each sending `GET /` and reading the answer (or the
close). Halfway through, a client bound to 127.0.0.2 does the same once and
its latency is measured. Prints one line per figure: connection attempts per
second, refused per second, served, the server's log lines, the server's
peak RSS, the refused-connection counter, and the second address's latency.
Stops the server by its PID. Bounded: CONCURRENCY sockets at a time,
SECONDS long, loopback only.

Usage: bench/hostile/conn_flood.py BINARY [--rate 20] [--seconds 5] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary: str, workdir: str, rate: int) -> tuple[subprocess.Popen, int, int, str]:
    http_port, admin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSD_")}
    log_path = os.path.join(workdir, "wssd.log")
    cmd = [binary, "serve", "--tls", "off", "--http", f"127.0.0.1:{http_port}",
           "--admin", f"127.0.0.1:{admin_port}", "--state-dir", os.path.join(workdir, "state"),
           "--connection-rate-per-ip", str(rate)]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"wssd exited with status {proc.returncode}; log in {log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, http_port, admin_port, log_path
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("wssd was not ready within 20 s")


async def attempt(port: int, source: str = "127.0.0.1") -> bool:
    """One connection: True when served (an HTTP answer), False when closed unanswered."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 5)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(12), 5)
        return head.startswith(b"HTTP/1.1 200")
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


async def flood(port: int, seconds: float, concurrency: int) -> tuple[int, int, float, float]:
    counts = {True: 0, False: 0}
    until = time.monotonic() + seconds
    second: list[float] = []

    async def worker() -> None:
        while time.monotonic() < until:
            counts[await attempt(port)] += 1

    async def other_address() -> None:
        await asyncio.sleep(seconds / 2)
        t = time.monotonic()
        ok = await attempt(port, "127.0.0.2")
        second.append((time.monotonic() - t) * 1000 if ok else float("nan"))

    start = time.monotonic()
    await asyncio.gather(other_address(), *[worker() for _ in range(concurrency)])
    return counts[True], counts[False], time.monotonic() - start, second[0]


def metric(admin_port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    conn.request("GET", "/metrics")
    for line in conn.getresponse().read().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--rate", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proc, http_port, admin_port, log_path = start(args.binary, workdir, args.rate)
        try:
            lines_before = sum(1 for _ in open(log_path, "rb"))
            served, refused, elapsed, second_ms = asyncio.run(
                flood(http_port, args.seconds, args.concurrency))
            refused_metric = metric(admin_port, 'wssd_connections_refused_total{reason="rate"}')
            rss = rss_kib(proc.pid)
            lines = sum(1 for _ in open(log_path, "rb")) - lines_before
        finally:
            proc.kill()
            proc.wait()
        attempts = served + refused
        print(f"attempts: {attempts / elapsed:.0f} connections/s from 127.0.0.1 for {elapsed:.1f} s "
              f"(--connection-rate-per-ip {args.rate}, {args.concurrency} at a time)")
        print(f"refused: {refused / elapsed:.0f} connections/s ({refused} in all)")
        print(f"served: {served} (burst {2 * args.rate} + {args.rate}/s)")
        print(f"wssd_connections_refused_total{{reason=\"rate\"}}: {refused_metric:.0f}")
        print(f"log lines written during the flood: {lines}")
        print(f"server peak RSS: {rss / 1024:.1f} MiB")
        print(f"127.0.0.2 during the flood: GET / answered in {second_ms:.1f} ms")


if __name__ == "__main__":
    main()
