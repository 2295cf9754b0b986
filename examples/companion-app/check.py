#!/usr/bin/env python3
"""The companion-app checks, run by test.sh against wssd (wssd.toml) in
front of app.py (uvicorn). Clients connect to 127.0.0.1 as
app.example.test (Host and SNI), most from the source address 127.0.0.2,
so the forwarded address differs from the app's TCP peer (wssd, 127.0.0.1).

While one socket stays idle for IDLE_SECS (90; no pings from the client,
nothing from the app), the others run one after another:
  1. forwarded: the app sees X-Forwarded-For/-Proto/-Host and X-Real-IP on
     a page request and a WebSocket upgrade, and uvicorn derives the
     client address and https/wss from them; a client's own
     X-Forwarded-For is replaced, not passed on;
  2. rate limit: a client flooding 200 messages is closed with 1008 (the
     route's message_rate 20/s, burst 40) while a client sending 10/s goes on;
  3. SOCKETS (1000) WebSockets open at once through the proxy with the
     default limits, each echoing, counted by the app and by wssd;
  4. renewal: the certificate files are replaced; new handshakes get the
     new certificate, a socket opened before keeps working.
Then the idle socket must still echo. Exits non-zero on the first failure.

Environment (from test.sh): WSSD_PORT, ADMIN_PORT, CERT, KEY, WSSD_BIN,
IDLE_SECS, SOCKETS.
"""

import asyncio
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

HOST = "app.example.test"
PORT = int(os.environ["WSSD_PORT"])
ADMIN = int(os.environ["ADMIN_PORT"])
CERT = os.environ["CERT"]
KEY = os.environ["KEY"]
WSSD_BIN = os.environ["WSSD_BIN"]
IDLE_SECS = float(os.environ.get("IDLE_SECS", "90"))
SOCKETS = int(os.environ.get("SOCKETS", "1000"))
CLIENT = "127.0.0.2"  # the test's own source address (Linux routes all of 127/8 to lo)
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def tls() -> ssl.SSLContext:
    """Trusts exactly the certificate in CERT now (full verification)."""
    return ssl.create_default_context(cafile=CERT)


def ws(ctx=None, source=CLIENT, **kw):
    return connect(f"wss://{HOST}:{PORT}/ws", ssl=ctx or tls(), host="127.0.0.1", port=PORT,
                   local_addr=(source, 0) if source else None, proxy=None, ping_interval=None,
                   open_timeout=30, close_timeout=10, **kw)


class Conn(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 from CLIENT, as HOST."""

    def connect(self):
        raw = socket.create_connection(("127.0.0.1", PORT), self.timeout, source_address=(CLIENT, 0))
        self.sock = self._context.wrap_socket(raw, server_hostname=HOST)


def get(path: str) -> dict:
    c = Conn(HOST, PORT, context=tls(), timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, f"GET {path}: {r.status} {body[:200]!r}"
        return json.loads(body)
    finally:
        c.close()


def metric_sum(name: str, **labels) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def served_fingerprint() -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", PORT), 10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def file_fingerprint(path: str) -> str:
    with open(path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


async def hello(sock) -> dict:
    return json.loads(await asyncio.wait_for(sock.recv(), 30))["hello"]


async def echo(sock, text: str) -> None:
    await sock.send(text)
    got = await asyncio.wait_for(sock.recv(), 30)
    assert got == text, f"sent {text!r}, got {got!r}"


# --- the checks ---------------------------------------------------------------


async def idle_socket(opened: asyncio.Event) -> float:
    async with ws() as sock:
        await hello(sock)
        opened.set()
        start = time.monotonic()
        log(f"idle: socket open; idle for {IDLE_SECS:.0f} s")
        await asyncio.sleep(IDLE_SECS)
        await echo(sock, "still here after the idle time")
        return time.monotonic() - start


async def forwarded() -> None:
    page = await asyncio.to_thread(get, "/")
    want = {"x-forwarded-for": CLIENT, "x-real-ip": CLIENT, "x-forwarded-proto": "https",
            "x-forwarded-host": f"{HOST}:{PORT}", "client": CLIENT}
    assert page == {**want, "scheme": "https"}, f"the app saw {page}"
    async with ws() as sock:
        h = await hello(sock)
    assert h == {**want, "scheme": "wss"}, f"the app saw {h} at the upgrade"
    async with ws(additional_headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "gopher"}) as sock:
        h = await hello(sock)
    assert h["x-forwarded-for"] == CLIENT and h["x-forwarded-proto"] == "https", f"spoofed headers passed: {h}"
    log(f"forwarded: the app sees {json.dumps(page)} (page) and scheme wss (WebSocket); spoofed ones replaced")


async def rate_limit() -> None:
    before = metric_sum("wssd_rate_limited_total", route="/", limit="messages")

    async def flood() -> tuple[int, str, int]:
        async with ws() as sock:
            await hello(sock)
            sent = 0
            try:
                for i in range(200):
                    await sock.send(f"flood {i}")
                    sent += 1
                async for _ in sock:
                    pass
            except ConnectionClosed:
                pass
            await sock.wait_closed()
            rcvd = sock.protocol.close_rcvd
            assert rcvd is not None, "no close frame from the server"
            return rcvd.code, rcvd.reason, sent

    async def polite() -> int:
        async with ws() as sock:
            await hello(sock)
            for i in range(30):  # 10 per second for 3 s
                await echo(sock, f"polite {i}")
                await asyncio.sleep(0.1)
            return 30

    (code, reason, sent), echoed = await asyncio.gather(flood(), polite())
    assert code == 1008, f"flooder closed with {code} {reason!r}, expected 1008"
    assert reason.startswith("message rate exceeded: 20/s, burst 40"), reason
    after = metric_sum("wssd_rate_limited_total", route="/", limit="messages")
    assert after == before + 1, f"wssd_rate_limited_total went from {before} to {after}"
    log(f"rate limit: flooder ({sent} sent) closed {code} {reason!r}; the 10/s client echoed all {echoed}")


async def many() -> None:
    gate = asyncio.Semaphore(64)  # handshakes in flight
    socks = []

    async def one(i: int):
        async with gate:
            sock = await ws(source=None)  # from 127.0.0.1, like one busy NAT address
            await hello(sock)
            return sock

    start = time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(SOCKETS)), return_exceptions=True)
    socks = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    try:
        assert not errors, f"{len(errors)} of {SOCKETS} sockets failed, first: {errors[0]!r}"
        opened = time.monotonic() - start
        await asyncio.gather(*(echo(s, f"socket {i}") for i, s in enumerate(socks)))
        stats = await asyncio.to_thread(get, "/stats")
        assert stats["open"] >= SOCKETS, f"the app counts {stats['open']} open sockets"
        at_wssd = await asyncio.to_thread(metric_sum, "wssd_connections_open", route="/")
        assert at_wssd >= SOCKETS, f"wssd counts {at_wssd} open on /"
        log(f"{SOCKETS} sockets: opened in {opened:.1f} s, all echoed; open at the app {stats['open']}, at wssd {at_wssd:.0f}")
    finally:
        await asyncio.gather(*(s.close() for s in socks), return_exceptions=True)


async def renewal() -> None:
    old = tls()
    before = await asyncio.to_thread(served_fingerprint)
    assert before == file_fingerprint(CERT)
    async with ws(ctx=old) as sock:
        await hello(sock)
        tmp_cert, tmp_key = CERT + ".new", KEY + ".new"
        subprocess.run([WSSD_BIN, "cert", "generate", "--hostname", HOST, "--out-cert", tmp_cert,
                        "--out-key", tmp_key], check=True, capture_output=True, timeout=30)
        new = file_fingerprint(tmp_cert)
        os.replace(tmp_key, KEY)  # as a renewal tool does: new files renamed into place
        os.replace(tmp_cert, CERT)
        start = time.monotonic()
        while (now := await asyncio.to_thread(served_fingerprint)) != new:
            assert now == before, "served neither the old nor the new certificate"
            assert time.monotonic() - start < 40, "the new certificate was not served within 40 s"
            await asyncio.sleep(0.2)
        took = time.monotonic() - start
        await echo(sock, "opened before the renewal")
    async with ws() as fresh:  # verifies against the new certificate only
        await hello(fresh)
    log(f"renewal: new certificate served {took:.1f} s after the files were replaced; the open socket kept working")


async def main() -> int:
    opened = asyncio.Event()
    idle = asyncio.create_task(idle_socket(opened))
    await asyncio.wait_for(opened.wait(), 30)
    for check in (forwarded, rate_limit, many, renewal):
        await check()
    secs = await idle
    log(f"idle: the socket idle for {secs:.1f} s still echoes")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
