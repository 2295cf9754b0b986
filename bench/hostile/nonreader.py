#!/usr/bin/env python3
"""bench/hostile/nonreader.py: how many WebSocket clients that send but never
read are still open after a while (issue 10, item 2).

Starts wssd itself on loopback (plain listener, default flags unless given),
opens N raw WebSocket connections with a small receive buffer, and for
WINDOW seconds keeps sending to each without ever reading (big binary
messages, or only pings with --frames ping). Then prints one line:

    echo: 0 of 200 non-reading clients still open after 20 s (bin target/debug/wssd; RSS 21 MiB)

"Open" is the client socket's TCP state (ESTABLISHED) from TCP_INFO, so a
reset or a close from the server both count as closed. Bounded: N sockets,
WINDOW seconds, loopback only; stops the servers it started (by PID).

Usage: bench/hostile/nonreader.py [--bin PATH] [--clients 200] [--window 20]
       [--route echo|proxy] [--frames big|ping] [-- EXTRA WSSD FLAGS]
"""

import argparse
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

TCP_ESTABLISHED = 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, args, state):
    """Starts wssd and waits until its plain listener accepts."""
    port = free_port()
    cmd = [binary, "--tls", "off", "--http", f"127.0.0.1:{port}", "--admin", "off",
           "--state-dir", state, "--log-level", "warn"] + args
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSD_")}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"wssd exited early ({proc.returncode}): {' '.join(cmd)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("wssd did not start within 30 s")


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def frame(opcode, length):
    mask = b"\x11\x22\x33\x44"
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    payload = (mask * (length // 4 + 1))[:length]  # zeros, masked
    return head + mask + payload


def connect(port, path):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise OSError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise OSError(head.split(b"\r\n")[0].decode(errors="replace"))
    s.setblocking(False)
    return s


def established(s):
    try:
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return info[0] == TCP_ESTABLISHED
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/debug/wssd")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--route", choices=["echo", "proxy"], default="echo")
    ap.add_argument("--frames", choices=["big", "ping"], default="big")
    ap.add_argument("extra", nargs="*", help="extra wssd flags (after --)")
    a = ap.parse_args()
    if a.clients > 250 or a.window > 300:
        sys.exit("bounded: at most 250 clients (one IP) and 300 s")

    procs = []
    state = tempfile.mkdtemp(prefix="wssd-nonreader-")
    try:
        if a.route == "proxy":
            backend, bport = start(a.bin, [], os.path.join(state, "b"))
            procs.append(backend)
            server, port = start(a.bin, ["--route", f"/ws/echo=proxy:ws://127.0.0.1:{bport}/ws/echo"] + a.extra,
                                 os.path.join(state, "f"))
        else:
            server, port = start(a.bin, a.extra, state)
        procs.append(server)

        # Pings go out 500 at a time (65 KB per send), so the pongs pile up fast.
        data = frame(0x2, 256 * 1024) if a.frames == "big" else frame(0x9, 125) * 500
        socks = []
        for _ in range(a.clients):
            socks.append([connect(port, "/ws/echo"), 0])  # socket, offset into `data`
        end = time.time() + a.window
        while time.time() < end:
            live = [c for c in socks if c[0].fileno() >= 0]
            _, writable, _ = select.select([], [c[0] for c in live], [], 0.1)
            ready = set(writable)
            for c in live:
                if c[0] not in ready:
                    continue
                try:
                    sent = c[0].send(data[c[1]:])
                    c[1] = (c[1] + sent) % len(data)
                except BlockingIOError:
                    pass
                except OSError:
                    pass  # reset by the server; counted below
        still = sum(1 for c in socks if established(c[0]))
        flags = " ".join(a.extra) if a.extra else "default flags"
        print(f"{a.route}/{a.frames}: {still} of {a.clients} non-reading clients still open after "
              f"{a.window:g} s ({flags}; bin {a.bin}; wssd RSS {rss_mib(server.pid):.0f} MiB)")
        for c in socks:
            c[0].close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


if __name__ == "__main__":
    main()
