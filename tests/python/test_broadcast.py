"""The broadcast route kind, the admin HTTP publish endpoint and slow-consumer
handling, end to end (docs/chat.md).

Servers run the real binary with `--route /ws/chat=chat --route
/ws/news=broadcast` (plus what a test adds), a publish token and a moderator
password in WSSD_MOD_PASSWORD. Clients talk wss:// with the server's
certificate verified, and ws:// where a test says so. The publish endpoint is
plain HTTP on the admin listener.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import sys
import time
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from conftest import http_request, metric_samples, run, ws_connect

TOKEN = "broadcast-test-publish-token-0123456789"
ROUTES = ["--route", "/ws/chat=chat", "--route", "/ws/news=broadcast"]
CHILD_ENV = {"WSSD_MOD_PASSWORD": "moderator password"}
WAIT = 5.0

_probe_ids = itertools.count()


def start(wssd, *extra: str, token: str | None = TOKEN, http: bool = False):
    args = [*ROUTES, *extra]
    if token is not None:
        args += ["--publish-token", token]
    return wssd.start(*args, http=http, env=CHILD_ENV)


def publish(srv, path: str, body: bytes, token: str | None = TOKEN, **headers):
    """POST /publish<path> on the admin listener; (status, headers, body)."""
    if token is not None:
        headers.setdefault("Authorization", f"Bearer {token}")
    return http_request("POST", f"http://127.0.0.1:{srv.admin_port}/publish{path}", body, headers)


async def apublish(srv, path: str, body: bytes, **kw):
    return await asyncio.to_thread(publish, srv, path, body, **kw)


async def recv(ws, timeout: float = WAIT):
    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"nothing arrived within {timeout}s") from None


async def connect_news(srv, plain: bool = False, **kwargs):
    if plain:
        return await ws_connect(srv.ws_url("/ws/news"), **kwargs)
    return await ws_connect(srv.wss_url("/ws/news"), ssl=srv.ssl_context(), **kwargs)


async def all_subscribed(srv, clients, path: str = "/ws/news") -> None:
    await all_subscribed_count(srv, clients, path=path)


async def all_subscribed_count(srv, clients, extra: int = 0, path: str = "/ws/news") -> None:
    """Returns once every client in CLIENTS is subscribed to the route.

    A broadcast connection subscribes right after its upgrade, so a message
    sent the moment a client's handshake completes might miss it. Publish
    probes until one reaches len(CLIENTS) subscribers, then let each client
    read up to that probe (earlier probes may have reached some of them).
    EXTRA more subscribers (that do not read here) are expected too."""
    deadline = time.monotonic() + WAIT
    while True:
        probe = f"probe-{next(_probe_ids)}"
        status, _, body = await apublish(srv, path, probe.encode())
        assert status == 200, (status, body)
        want = len(clients) + extra
        if json.loads(body)["delivered"] >= want:
            assert json.loads(body)["delivered"] == want, body
            break
        assert time.monotonic() < deadline, f"only {body!r} of {want} subscribed"
        await asyncio.sleep(0.02)
    for ws in clients:
        while (msg := await recv(ws)) != probe:
            assert isinstance(msg, str) and msg.startswith("probe-"), msg


async def nothing_pending(sender, others) -> None:
    """Proves SENDER has received nothing it should not have: another client
    sends a marker, and the marker must be the sender's very next message."""
    marker = f"marker-{next(_probe_ids)}"
    await others[0].send(marker)
    assert await recv(sender) == marker, "the sender got something before the marker"
    for ws in others[1:]:
        assert await recv(ws) == marker


# -- broadcast between clients ----------------------------------------------------

def test_text_reaches_the_others_and_not_the_sender(wssd):
    srv = start(wssd, http=True)

    async def main():
        # two over wss://, one over ws://: one route, whichever listener
        a = await connect_news(srv)
        b = await connect_news(srv)
        c = await connect_news(srv, plain=True)
        await all_subscribed(srv, [a, b, c])
        await a.send("hello from a \u2713")
        for ws in (b, c):
            got = await recv(ws)
            assert got == "hello from a \u2713" and isinstance(got, str), repr(got)
        await nothing_pending(a, [b, c])
        # every client is a sender too
        await c.send("from c")
        assert await recv(a) == "from c"
        assert await recv(b) == "from c"
        await nothing_pending(c, [a, b])
        for ws in (a, b, c):
            await ws.close()

    run(main())


def test_binary_and_large_messages_are_preserved(wssd):
    srv = start(wssd)

    async def main():
        a, b, c = [await connect_news(srv) for _ in range(3)]
        await all_subscribed(srv, [a, b, c])
        payload = bytes(range(256)) * 8 + b"\x00\xff\x00"
        await a.send(payload)
        for ws in (b, c):
            got = await recv(ws)
            assert isinstance(got, bytes), f"binary arrived as {type(got).__name__}"
            assert got == payload
        big = os.urandom(100 * 1024)
        await b.send(big)
        big_text = "".join(chr(0x41 + i % 26) for i in range(100 * 1024 - 4)) + "\u20ac\u00e9"
        await b.send(big_text)
        for ws in (a, c):
            got = await recv(ws)
            assert isinstance(got, bytes) and len(got) == len(big) and got == big
            got = await recv(ws)
            assert isinstance(got, str) and got == big_text
        await nothing_pending(a, [b, c])
        await nothing_pending(b, [a, c])
        for ws in (a, b, c):
            await ws.close()

    run(main())


# -- the publish endpoint ----------------------------------------------------------

def test_publish_disabled_without_token(wssd):
    srv = start(wssd, token=None)
    status, _, body = publish(srv, "/ws/news", b"hello", token="any-token-0123456789abcdef")
    assert status == 404, (status, body)
    assert b"--publish-token" in body, body
    status, _, body = publish(srv, "/ws/news", b"hello", token=None)
    assert status == 404 and b"--publish-token" in body, (status, body)


def test_publish_needs_the_bearer_token(wssd):
    srv = start(wssd)

    async def main():
        a = await connect_news(srv)
        await all_subscribed(srv, [a])
        for headers in [
            {},
            {"Authorization": "Bearer wrong-token-0123456789abcdef"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
        ]:
            status, _, body = await asyncio.to_thread(
                http_request, "POST", f"http://127.0.0.1:{srv.admin_port}/publish/ws/news",
                b"must not arrive", headers)
            assert status == 401, (headers, status, body)
        # none of them was delivered: the next message is the authorized one
        status, _, body = await apublish(srv, "/ws/news", b"authorized")
        assert status == 200, (status, body)
        assert await recv(a) == "authorized"
        await a.close()

    run(main())


def test_publish_to_broadcast_text_and_binary(wssd):
    srv = start(wssd)

    async def main():
        subs = [await connect_news(srv) for _ in range(3)]
        await all_subscribed(srv, subs)
        status, headers, body = await apublish(srv, "/ws/news", "breaking: \u2603".encode(),
                                               **{"Content-Type": "text/plain; charset=utf-8"})
        assert status == 200, (status, body)
        assert json.loads(body) == {"delivered": 3}, body
        for ws in subs:
            got = await recv(ws)
            assert isinstance(got, str) and got == "breaking: \u2603", repr(got)

        blob = bytes(range(200))  # not valid UTF-8 either way
        status, _, body = await apublish(srv, "/ws/news", b"plain ascii but binary",
                                         **{"Content-Type": "application/octet-stream"})
        assert status == 200 and json.loads(body) == {"delivered": 3}, (status, body)
        status, _, body = await apublish(srv, "/ws/news", blob)
        assert status == 200 and json.loads(body) == {"delivered": 3}, (status, body)
        for ws in subs:
            got = await recv(ws)
            assert isinstance(got, bytes) and got == b"plain ascii but binary", repr(got)
            got = await recv(ws)
            assert isinstance(got, bytes) and got == blob, repr(got)

        # N counts the subscribers there are now
        await subs.pop().close()
        status, _, body = await apublish(srv, "/ws/news", b"two left")
        assert status == 200 and json.loads(body) == {"delivered": 2}, (status, body)
        for ws in subs:
            assert await recv(ws) == "two left"
        for ws in subs:
            await ws.close()

    run(main())


def test_publish_refusals(wssd, tmp_path):
    config = tmp_path / "publish.toml"
    config.write_text(
        f'publish_token = "{TOKEN}"\n'
        '[[route]]\npath = "/ws/news"\nkind = "broadcast"\n'
        '[[route]]\npath = "/ws/small"\nkind = "broadcast"\nmax_message_size = 1024\n'
        '[[route]]\npath = "/ws/chat"\nkind = "chat"\n'
        '[[route]]\npath = "/ws/echo"\nkind = "echo"\n'
    )
    srv = wssd.start("--config", str(config), env=CHILD_ENV)

    async def main():
        small = await connect_news(srv)  # on /ws/news: a subscriber that must see nothing refused
        await all_subscribed(srv, [small])
        for path, want in [
            ("/ws/nothing-here", 404),
            ("/ws/echo", 404),  # a route, but not chat or broadcast
            ("/ws", 404),
            ("/ws/chat", 400),  # chat without ?room=
        ]:
            status, _, body = await apublish(srv, path, b"x")
            assert status == want, (path, status, body)
        status, _, body = await apublish(srv, "/ws/small", b"y" * 1025)
        assert status == 413, (status, body)
        status, _, body = await apublish(srv, "/ws/small", b"y" * 1024)
        assert status == 200 and json.loads(body) == {"delivered": 0}, (status, body)
        # /ws/news has the default limit: 100 KB is fine there
        status, _, body = await apublish(srv, "/ws/news", b"z" * 100_000)
        assert status == 200 and json.loads(body) == {"delivered": 1}, (status, body)
        assert await recv(small) == "z" * 100_000
        # publishing needs POST
        status, _, body = await asyncio.to_thread(
            http_request, "GET", f"http://127.0.0.1:{srv.admin_port}/publish/ws/news", None,
            {"Authorization": f"Bearer {TOKEN}"})
        assert status in (404, 405), (status, body)
        await small.close()

    run(main())


# -- slow consumers ------------------------------------------------------------------

SIZE = 1024


def _message_count() -> int:
    """5000, or more when the kernel lets the server buffer more: the server's
    socket send buffer grows up to tcp_wmem's maximum (4 MiB by default) before
    a write to a client that reads nothing blocks, and only then does its
    1024-message queue fill. Enough messages to overflow both, with margin."""
    try:
        wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        wmem_max = 4 * 1024 * 1024
    return max(5000, wmem_max // SIZE + 2048)


MESSAGES = _message_count()

# A publisher in its own process, so that how fast the test's readers (in this
# process) read does not depend on how the event loop shares time with the
# publisher. It connects, prints "ready", waits for "go", sends MESSAGES
# messages as fast as it can, prints "sent SECONDS" and waits for stdin to close.
PUBLISHER = r"""
import asyncio, ssl, sys, time
from conftest import ws_connect
from test_broadcast import MESSAGES, frame

async def main(url, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    async with ws_connect(url, ssl=ctx) as ws:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        started = time.monotonic()
        for i in range(MESSAGES):
            await ws.send(frame(i))
        print(f"sent {time.monotonic() - started:.3f}", flush=True)
        await asyncio.to_thread(sys.stdin.read)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def frame(i: int) -> str:
    head = f"seq {i:05d} "
    return head + "." * (SIZE - len(head))


class Readers:
    """Normal readers: each reads every message as soon as it arrives and
    records it; `progress` is notified as they go."""

    def __init__(self, sockets):
        self.sockets = sockets
        self.received: list[list[str]] = [[] for _ in sockets]
        self.endings: list[BaseException | None] = [None for _ in sockets]
        self.progress = asyncio.Condition()
        self.tasks = [asyncio.create_task(self._read(k)) for k in range(len(sockets))]

    async def _read(self, k: int) -> None:
        got = self.received[k]
        try:
            while len(got) < MESSAGES:
                got.append(await self.sockets[k].recv())
                if len(got) % 64 == 0 or len(got) == MESSAGES:
                    async with self.progress:
                        self.progress.notify_all()
        except ConnectionClosed as exc:
            self.endings[k] = exc
            async with self.progress:
                self.progress.notify_all()

    def slowest(self) -> int:
        return min(len(got) for got in self.received)

    def any_closed(self) -> bool:
        return any(e is not None for e in self.endings)

    async def finish(self, timeout: float) -> float:
        started = time.monotonic()
        _, pending = await asyncio.wait(self.tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        return time.monotonic() - started

    def check(self, what: str) -> None:
        for k, got in enumerate(self.received):
            ending = self.endings[k]
            assert len(got) == MESSAGES, (
                f"{what}: normal reader {k} got {len(got)} of {MESSAGES} messages"
                + (f", then the server closed it: {ending.rcvd}" if ending is not None else ""))
            bad = next((i for i, m in enumerate(got) if m != frame(i)), None)
            assert bad is None, f"{what}: reader {k}: message {bad} out of order or damaged"


async def connect_slow(srv):
    """A client that never reads: a 4 KiB kernel receive buffer and a
    1-message client queue, so its TCP receive window fills and stays full."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", srv.tls_port))
    raw.setblocking(False)
    return await ws_connect(srv.wss_url("/ws/news"), ssl=srv.ssl_context(), sock=raw,
                            max_queue=1)


async def check_slow_client_closed_1008(srv, slow) -> str:
    """The slow client now reads: what was buffered, then the server's close 1008."""
    slow_got = 0
    try:
        while True:
            msg = await recv(slow)
            assert msg.startswith("seq ") or msg.startswith("probe-"), msg[:20]
            slow_got += 1
    except ConnectionClosed as exc:
        closed = exc
    assert slow_got < MESSAGES, "the slow client got everything: it was never cut off"
    assert closed.rcvd is not None, \
        f"slow client dropped without a close frame after {slow_got} messages: {closed!r}"
    assert closed.rcvd.code == 1008, f"slow client: expected close 1008, got {closed.rcvd}"
    dropped = metric_samples(srv, "wssd_subscribers_dropped_total")
    closes = metric_samples(srv, "wssd_close_codes_total")
    assert dropped.get('{route="/ws/news",reason="slow"}', 0) > 0 \
        or closes.get('{code="1008"}', 0) > 0, (dropped, closes)
    return f"slow client read {slow_got} then {closed.rcvd}; dropped={dropped}"


def test_slow_consumer_is_cut_and_does_not_delay_paced_readers(wssd):
    """The publisher goes as fast as the normal readers read (at most 256
    messages ahead of the slowest, well under the 1024-message queue); the
    client that reads nothing must not slow it down, and is cut with 1008."""
    srv = start(wssd)

    async def main():
        sockets = [await connect_news(srv, max_queue=None) for _ in range(3)]
        slow = await connect_slow(srv)
        publisher = await connect_news(srv)
        await all_subscribed(srv, [*sockets, slow, publisher])
        readers = Readers(sockets)
        started = time.monotonic()
        for i in range(MESSAGES):
            await publisher.send(frame(i))
            if i - readers.slowest() > 256:
                async with readers.progress:
                    await asyncio.wait_for(readers.progress.wait_for(
                        lambda: i - readers.slowest() <= 128 or readers.any_closed()), 15)
        await readers.finish(timeout=20)
        took = time.monotonic() - started
        readers.check("paced publisher")
        # a publisher held up by the slow client would have waited for the 10 s send timeout
        assert took < 8, f"{MESSAGES} messages took {took:.1f}s: the slow client delayed the others"
        note = await check_slow_client_closed_1008(srv, slow)
        print(f"paced: {MESSAGES} messages to 3 readers in {took:.2f}s; {note}")
        for ws in [*sockets, publisher]:
            await ws.close()

    run(main(), timeout=50)


def test_slow_consumer_with_a_publisher_at_full_speed(wssd):
    """A publisher (its own process) sends MESSAGES (5000 or more) messages of
    1 KB as fast as it can; three readers read as fast as they can,
    one client reads nothing. The readers get every message in order; the slow one
    is cut with 1008."""
    srv = start(wssd)

    async def main():
        sockets = [await connect_news(srv, max_queue=None) for _ in range(3)]
        slow = await connect_slow(srv)
        here = Path(__file__).resolve().parent
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUBLISHER, srv.wss_url("/ws/news"), str(srv.cert_path),
            cwd=here, env={**os.environ, "PYTHONPATH": str(here)},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 15)
            assert line == b"ready\n", f"publisher process said {line!r}"
            # the publisher is a subscriber too (it reads nothing, but gets no messages)
            await all_subscribed_count(srv, sockets + [slow], extra=1)
            readers = Readers(sockets)
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line.startswith(b"sent "), f"publisher process said {line!r}"
            await readers.finish(timeout=20)
            readers.check(f"publisher at full speed ({line.decode().strip()} s)")
            note = await check_slow_client_closed_1008(srv, slow)
            print(f"full speed: publisher {line.decode().strip()} s; {note}")
        finally:
            if proc.returncode is None:
                proc.stdin.close()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()
        for ws in sockets:
            await ws.close()

    run(main(), timeout=55)
