#!/usr/bin/env python3
"""Issue 10 items 4, 6, 7 (edge): what a hostile client gets, one line per probe.

Starts the wssd binary given as the first argument (default target/debug/wssd)
on loopback twice (TLS proxy front with a recording upstream; plain listener
for the Host/Origin probes), sends raw requests with sockets, prints one line
per probe: `probe: result`, and stops everything it started. Bounded: each
request has a 5 s timeout, the whole run takes a few seconds.

    python3 bench/hostile/edge_probe.py target/wssd-before
    python3 bench/hostile/edge_probe.py target/debug/wssd
"""

import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/wssd"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """Plain HTTP upstream answering each request with its own head."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    @staticmethod
    def one(c):
        c.settimeout(5)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = c.recv(4096)
                if not chunk:
                    return
                head += chunk
            if b"transfer-encoding: chunked" in head.lower():
                # Wait for the body like a real app would; never answer.
                while c.recv(4096):
                    pass
                return
            head = head.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(head) + head)
        except OSError:
            pass
        finally:
            c.close()


def start(args):
    state = tempfile.mkdtemp(prefix="wssd-edge-probe-")
    admin = free_port()
    p = subprocess.Popen(
        [BIN, "--admin", f"127.0.0.1:{admin}", "--state-dir", state, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            if opener.open(f"http://127.0.0.1:{admin}/readyz", timeout=1).status == 200:
                return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit(f"{BIN} did not become ready")


def exchange(port, raw, tls):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(raw)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.startswith(b"HTTP/1.1 101") and b"\r\n\r\n" in data:
                break
    except OSError:
        pass
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "no answer"
    return status, head.decode(errors="replace"), body.decode(errors="replace")


def get(port, path, headers=(), tls=True, host="localhost"):
    raw = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    raw += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return exchange(port, raw.encode(), tls)


def upgrade(port, host, origin=None, key=KEY, tls=False):
    raw = (
        f"GET /ws/echo HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    )
    if origin:
        raw += f"Origin: {origin}\r\n"
    return exchange(port, (raw + "\r\n").encode(), tls)[0]


def main():
    up = Recorder()
    tls_port, http_port = free_port(), free_port()
    front = start([
        "--listen", f"127.0.0.1:{tls_port}",
        "--route", f"/b=proxy:http://127.0.0.1:{up.port}/v1",
        "--route", f"/api=proxy:http://127.0.0.1:{up.port}/apiup",
        "--route", f"/=proxy:http://127.0.0.1:{up.port}/root",
    ])
    plain = start(["--tls", "off", "--http", f"127.0.0.1:{http_port}", "--route", "/ws/echo=echo"])
    tls_echo = free_port()
    tlsd = start(["--listen", f"127.0.0.1:{tls_echo}", "--route", "/ws/echo=echo", "--route", "/=static"])
    try:
        for path in ["/b/../admin", "/b/%2e%2e/admin", "/api/../secret", "/b/../../etc/passwd"]:
            status, _, body = get(tls_port, path)
            if status == "200" and body:
                print(f"item4 GET {path}: 200, upstream saw `{body.splitlines()[0]}`")
            else:
                print(f"item4 GET {path}: {status} `{body.strip()}`")
        _, _, body = get(tls_port, "/x", [("Forwarded", "for=6.6.6.6")])
        fwd = [l for l in body.splitlines() if l.lower().startswith("forwarded:")]
        print(f"item4 Forwarded from untrusted client reaches upstream: {fwd or 'no'}")
        h = f"rebind.attacker.example:{http_port}"
        print(f"item6 --http upgrade, Host {h}, Origin http://{h}: {upgrade(http_port, h, 'http://' + h)}")
        h = f"127.0.0.1:{http_port}"
        print(f"item6 --http upgrade, Host {h}, Origin http://{h}: {upgrade(http_port, h, 'http://' + h)}")
        h = f"localhost:{tls_echo}"
        print(f"item6 TLS upgrade, Origin http://{h} (cross-scheme): {upgrade(tls_echo, h, 'http://' + h, tls=True)}")
        h = f"127.0.0.1:{http_port}"
        print(f"item7 upgrade with key '!'*22+'==': {upgrade(http_port, h, key='!' * 22 + '==')}")
        raw = (b"POST /b/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\nzz\r\n")
        print(f"item7 bad chunked body through the proxy: {exchange(tls_port, raw, True)[0]}")
        status, head, _ = get(tls_echo, "/")
        csp = "yes" if "content-security-policy" in head.lower() else "no"
        print(f"item7 bundled page Content-Security-Policy: {csp}")
    finally:
        for p in (front, plain, tlsd):
            p.terminate()
        for p in (front, plain, tlsd):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        up.stop = True


if __name__ == "__main__":
    main()
