"""The device console against a running wssd (started by test.sh).

`caps`: the console answers with the password over ws:// and wss://, the page
and the console are refused without it (401), 4 TLS and 10 plain sockets are
the caps (the 5th and 11th are closed at accept while the other listener
still accepts), and closing one frees its slot.
`memory`: RSS of the wssd process with N idle wss:// console sockets open vs
none; prints KiB per TLS session.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

USER, PASSWORD = "admin", "console-demo"
TIMEOUT = 5.0


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Target:
    def __init__(self, args):
        self.tls_port, self.http_port, self.admin_port = args.tls_port, args.http_port, args.admin_port
        self.ctx = ssl.create_default_context(cafile=args.cert)

    def url(self, tls: bool, path: str = "/console") -> str:
        return f"wss://localhost:{self.tls_port}{path}" if tls else f"ws://127.0.0.1:{self.http_port}{path}"

    async def console(self, tls: bool, headers=None):
        """An open console (its greeting read)."""
        ws = await connect(self.url(tls), ssl=self.ctx if tls else None,
                           additional_headers=basic(USER, PASSWORD) if headers is None else headers,
                           open_timeout=TIMEOUT)
        greeting = await asyncio.wait_for(ws.recv(), TIMEOUT)
        scheme = "wss" if tls else "ws"
        assert greeting == f"device console, {USER} over {scheme}; type help", greeting
        return ws

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=TIMEOUT) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[-1])
        return 0.0


async def ask(ws, line: str) -> str:
    await ws.send(line)
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


def refused_at_accept(t: Target, tls: bool) -> bool:
    """Whether a new connection is closed by the server before any answer
    (before TLS on the TLS listener)."""
    port = t.tls_port if tls else t.http_port
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    except OSError:
        return True
    with raw:
        if tls:
            try:
                with t.ctx.wrap_socket(raw, server_hostname="localhost"):
                    return False
            except (ssl.SSLError, OSError):
                return True
        raw.settimeout(TIMEOUT)
        try:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return raw.recv(64) == b""
        except socket.timeout:
            return False
        except OSError:
            return True


def page_status(t: Target, tls: bool, headers: dict[str, str]) -> tuple[int, str]:
    url = f"https://localhost:{t.tls_port}/" if tls else f"http://127.0.0.1:{t.http_port}/"
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT, context=t.ctx if tls else None) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("WWW-Authenticate", "")


async def check_password(t: Target):
    for tls in (False, True):
        ws = await t.console(tls)
        assert await ask(ws, "echo hello device") == "hello device"
        assert await ask(ws, "led on") == "led on"
        assert await ask(ws, "whoami") == USER
        assert (await ask(ws, "rm -rf /")).startswith("unknown command: rm")
        assert await ask(ws, "echo $(id) `id` *") == "echo $(id) `id` *".removeprefix("echo "), "evaluated input"
        await ws.close()
        for headers in ({}, basic(USER, "wrong-password"), basic("root", PASSWORD)):
            try:
                await t.console(tls, headers=headers)
            except InvalidStatus as e:
                assert e.response.status_code == 401, e.response.status_code
            else:
                raise AssertionError(f"console opened with {headers} over {'wss' if tls else 'ws'}")
        status, body = page_status(t, tls, basic(USER, PASSWORD))
        assert status == 200 and "Device console" in body, status
        status, challenge = page_status(t, tls, {})
        assert status == 401 and challenge.startswith('Basic realm="device console"'), (status, challenge)
    print("ok: the console answers with the password over ws:// and wss://; 401 without it")


async def connect_when_free(t: Target, tls: bool, limit: float = TIMEOUT):
    """A console on a listener that just freed a slot (its close is the
    signal; the server releases the slot right after it)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return await t.console(tls)
        except (OSError, ssl.SSLError, EOFError, asyncio.TimeoutError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"no slot freed within {limit} s: {e!r}")
            await asyncio.sleep(0.02)
        except Exception as e:  # websockets' own handshake errors on a closed socket
            if time.monotonic() > deadline:
                raise AssertionError(f"no slot freed within {limit} s: {e!r}")
            await asyncio.sleep(0.02)


async def check_caps(t: Target):
    # Connections of the checks before may take a moment to be released.
    wss = [await connect_when_free(t, True) for _ in range(4)]
    before = t.metric('wssd_connections_refused_total{reason="listener"}')
    assert refused_at_accept(t, True), "a 5th TLS connection was served"
    ws = [await t.console(False) for _ in range(10)]  # the plain listener still accepts
    assert refused_at_accept(t, False), "an 11th plain connection was served"
    assert await ask(wss[0], "echo still here") == "still here"
    assert await ask(ws[9], "echo still here") == "still here"
    refused = t.metric('wssd_connections_refused_total{reason="listener"}') - before
    assert refused == 2, f"{refused} refusals counted with reason listener"
    await wss.pop().close()
    wss.append(await connect_when_free(t, True))
    await ws.pop().close()
    ws.append(await connect_when_free(t, False))
    assert refused_at_accept(t, True) and refused_at_accept(t, False), "caps no longer hold"
    for w in wss + ws:
        await w.close()
    print("ok: caps hold (5th TLS and 11th plain refused at accept, counted); closing one frees a slot")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/comm") as f:
        assert f.read().strip() == "wssd", f"pid {pid} is not wssd"
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def measure(t: Target, pid: int, n: int):
    # Warm up (allocator arenas, the first exec, TLS tickets), then measure.
    for _ in range(2):
        warm = [await t.console(True) for _ in range(4)]
        for w in warm:
            await w.close()
    idle = rss_kib(pid)
    sockets = [await t.console(True) for _ in range(n)]
    for w in sockets[:: max(1, n // 8)]:
        assert await ask(w, "echo up") == "up"
    loaded = rss_kib(pid)
    for w in sockets:
        await w.close()
    per = (loaded - idle) / n
    print(f"memory: wssd VmRSS {idle} KiB with no console, {loaded} KiB with {n} idle wss:// consoles: "
          f"{per:.0f} KiB per TLS console session (the console.sh processes are not counted)")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["caps", "memory"])
    p.add_argument("--tls-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--admin-port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--pid", type=int)
    p.add_argument("--sessions", type=int, default=32)
    args = p.parse_args()
    t = Target(args)
    if args.mode == "caps":
        asyncio.run(check_password(t))
        asyncio.run(check_caps(t))
    else:
        asyncio.run(measure(t, args.pid, args.sessions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
