#!/usr/bin/env python3
"""bench/hostile/memory_rss.py: the server's memory under two hostile loads
(issue 10 items 1 and 3). `fanout_rss.py` and `partial_rss.py` run its modes.

Starts BINARY (`wssd serve`, plain listener only, on 127.0.0.1, state in a
temporary folder, `--max-connections-per-ip` raised so one address can open
them all), reads the server's VmRSS and VmHWM (peak) from /proc/PID/status,
and prints one line per figure. Stops the server by its PID. Bounded: at
most N sockets, a deadline per phase, loopback only.

Modes:
- `fanout`: N subscribers on a broadcast route whose max_message_size is
  SIZE; one publisher sends one SIZE binary message. `--stall`: the
  subscribers never read (small receive buffer); the publisher then sends
  four messages and the script waits until the server cut them off as slow
  (`wssd_subscribers_dropped_total`), reporting how many.
- `partial`: N connections to the echo route each send the header of a SIZE
  message and SIZE-1 bytes of it, then hold it; reports the RSS once every
  connection sent its bytes (or was closed) and how many were closed (and
  with which code).

Usage:
  bench/hostile/memory_rss.py fanout BINARY [-n 300] [--size 4194304] [--stall] [--tls]
  bench/hostile/memory_rss.py partial BINARY [-n 1000] [--size 4194304] [-- EXTRA WSSD ARGS]
Needs: Python 3.10+ (standard library only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_mib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


class Server:
    def __init__(self, binary: str, workdir: str, config: str | None, extra: list[str], tls: bool = False):
        self.http_port, self.admin_port = free_port(), free_port()
        self.tls = tls
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSSD_")}
        listener = (["--listen", f"127.0.0.1:{self.http_port}"] if tls
                    else ["--tls", "off", "--http", f"127.0.0.1:{self.http_port}"])
        cmd = [binary, "serve", *listener,
               "--admin", f"127.0.0.1:{self.admin_port}", "--state-dir", os.path.join(workdir, "state"),
               "--max-connections-per-ip", "100000", "--log-level", "warn"]
        if config is not None:
            path = os.path.join(workdir, "wssd.toml")
            with open(path, "w") as f:
                f.write(config)
            cmd += ["--config", path]
        cmd += extra
        self.log = open(os.path.join(workdir, "wssd.log"), "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"wssd exited: {open(self.log.name).read()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("wssd not ready after 30 s")
            time.sleep(0.05)

    def rss(self) -> float:
        return status_mib(self.proc.pid, "VmRSS:")

    def peak(self) -> float:
        return status_mib(self.proc.pid, "VmHWM:")

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[-1])
        return 0.0

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def client_tls() -> ssl.SSLContext:
    # Loopback measurement against a throwaway self-signed certificate.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def upgrade(port: int, path: str, rcvbuf: int | None = None, tls: bool = False):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(
        sock=sock, limit=1 << 16, ssl=client_tls() if tls else None,
        server_hostname="localhost" if tls else None)
    writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.decode(errors="replace"))
    return reader, writer


def client_frame_header(size: int) -> bytes:
    # binary, FIN, masked with key 0 (payload goes as is), 64-bit length
    return bytes([0x82, 0x80 | 127]) + struct.pack(">Q", size) + b"\0\0\0\0"


async def fanout(args, server: Server) -> None:
    n, size = args.n, args.size
    subs = []
    for _ in range(n):
        subs.append(await upgrade(server.http_port, "/b", rcvbuf=16384 if args.stall else None,
                                  tls=server.tls))
    pub_r, pub_w = await upgrade(server.http_port, "/b", tls=server.tls)
    await asyncio.sleep(0.5)
    before = server.rss()
    print(f"fanout: {n} subscribers connected: RSS {before:.0f} MiB")
    payload = b"\x2a" * size
    count = 4 if args.stall else 1
    started = time.monotonic()

    async def drain(reader) -> int:
        want, got = size + 10, 0
        while got < want:
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            got += len(chunk)
        return got

    tasks = [] if args.stall else [asyncio.create_task(drain(r)) for r, _ in subs]
    for _ in range(count):
        pub_w.write(client_frame_header(size))
        pub_w.write(payload)
        await pub_w.drain()
    if args.stall:
        deadline = time.monotonic() + 60
        cut = 0.0
        while time.monotonic() < deadline:
            cut = server.metric('wssd_subscribers_dropped_total{route="/b",reason="slow"}')
            if cut >= n:
                break
            await asyncio.sleep(0.2)
        print(f"fanout{' (TLS)' if server.tls else ''}: {count} x {size // MIB} MiB to {n} non-reading subscribers: "
              f"RSS {server.rss():.0f} MiB, peak {server.peak():.0f} MiB (+{server.peak() - before:.0f} MiB); "
              f"cut off as slow: {cut:.0f} of {n} after {time.monotonic() - started:.1f} s")
    else:
        got = await asyncio.wait_for(asyncio.gather(*tasks), 300)
        complete = sum(1 for g in got if g >= size + 10)
        print(f"fanout{' (TLS)' if server.tls else ''}: 1 x {size // MIB} MiB to {n} reading subscribers: "
              f"RSS {server.rss():.0f} MiB, peak {server.peak():.0f} MiB (+{server.peak() - before:.0f} MiB); "
              f"{complete} of {n} got it in {time.monotonic() - started:.1f} s")
    for _, w in subs + [(pub_r, pub_w)]:
        w.transport.abort()


async def partial(args, server: Server) -> None:
    n, size = args.n, args.size
    before = server.rss()
    print(f"partial: before: RSS {before:.0f} MiB")
    chunk = b"\x01" * MIB
    conns = []
    closed: dict[int, int] = {}

    async def one(i: int) -> None:
        reader, writer = await upgrade(server.http_port, "/ws/echo")
        conns.append((reader, writer))
        try:
            writer.write(client_frame_header(size))
            left = size - 1
            while left > 0:
                k = min(left, len(chunk))
                writer.write(chunk[:k])
                await asyncio.wait_for(writer.drain(), 20)
                left -= k
        except (ConnectionError, asyncio.TimeoutError):
            pass
        # Was it closed? A close frame is 0x88, length, code.
        try:
            head = await asyncio.wait_for(reader.readexactly(4), 0.5)
            if head[0] == 0x88:
                code = struct.unpack(">H", head[2:4])[0]
                closed[code] = closed.get(code, 0) + 1
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass

    started = time.monotonic()
    # A few at a time, so the figure is about memory, not the event loop.
    sem = asyncio.Semaphore(32)

    async def limited(i: int) -> None:
        async with sem:
            await one(i)

    await asyncio.gather(*(limited(i) for i in range(n)))
    await asyncio.sleep(0.5)
    codes = ", ".join(f"{v} closed with {k}" for k, v in sorted(closed.items())) or "none closed"
    print(f"partial: {n} connections x {size // MIB} MiB unfinished: RSS {server.rss():.0f} MiB, "
          f"peak {server.peak():.0f} MiB (+{server.peak() - before:.0f} MiB); {codes}; "
          f"{time.monotonic() - started:.1f} s")
    for _, w in conns:
        w.transport.abort()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["fanout", "partial"])
    p.add_argument("binary")
    p.add_argument("-n", type=int, default=None, help="subscribers / connections")
    p.add_argument("--size", type=int, default=4 * MIB)
    p.add_argument("--stall", action="store_true", help="fanout: subscribers never read")
    p.add_argument("--tls", action="store_true", help="fanout: wss:// (self-signed) instead of ws://")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.extra = extra  # more wssd arguments, after --
    if args.n is None:
        args.n = 300 if args.mode == "fanout" else 1000
    if not 1 <= args.n <= 5000:
        raise SystemExit("-n must be between 1 and 5000")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.n + 100)), hard))
    with tempfile.TemporaryDirectory() as workdir:
        config = None
        if args.mode == "fanout":
            config = f'[[route]]\npath = "/b"\nkind = "broadcast"\nmax_message_size = {args.size}\n'
        else:
            args.extra = ["--max-message-size", str(args.size), *args.extra]
        server = Server(args.binary, workdir, config, args.extra, tls=args.tls)
        try:
            asyncio.run(fanout(args, server) if args.mode == "fanout" else partial(args, server))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
