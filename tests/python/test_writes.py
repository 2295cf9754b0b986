"""How many system calls the server makes to send one frame (issue 16).

A frame's header and payload must leave in one write: over TLS one `writev`
carrying the records, on TCP one segment. The header written on its own
costs a system call, a TCP segment and, over TLS, a record (a 22-byte
envelope and an AEAD pass) per message, and the peer's wake-up for it.
Checked with strace attached to the real server while one 16 KiB message
echoes, the size where it went wrong (hyper's upgraded connection lost the
vectored write, and rustls' 16 KiB queue limit took the payload without its
header).
"""

import asyncio
import os

import pytest

from conftest import run, ws_connect
from strace_calls import needs_strace, traced_calls

pytestmark = needs_strace

SIZE = 16 * 1024


def traced_writes(pid, send_one):
    """The (syscall, bytes) writes of every thread of `pid` while send_one() runs."""
    return [(call, result) for call, _, result, rest in
            traced_calls(pid, ["writev", "sendto", "sendmsg"], send_one) if result >= 0 and not rest.strip()]


def writes_during_one_echo(srv, url, ctx, payload):
    """The server's writes while one warmed-up connection echoes `payload` once."""

    async def echo_once(ws):
        await ws.send(payload)
        assert await ws.recv() == payload

    async def scenario():
        # One connection, warmed up; the trace covers exactly one echo.
        async with ws_connect(url, ssl=ctx, compression=None) as ws:
            await ws.send(b"warm up")
            assert await ws.recv() == b"warm up"
            loop = asyncio.get_running_loop()

            def traced():
                def echo():  # scheduled once strace is attached
                    asyncio.run_coroutine_threadsafe(echo_once(ws), loop).result(20)
                return traced_writes(srv.proc.pid, echo)

            return await loop.run_in_executor(None, traced)

    return run(scenario(), timeout=40)


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_a_16_kib_frame_leaves_in_one_write(wssd, scheme):
    srv = wssd.start(http=True)
    url = srv.wss_url() if scheme == "wss" else srv.ws_url()
    ctx = srv.ssl_context() if scheme == "wss" else None
    writes = writes_during_one_echo(srv, url, ctx, os.urandom(SIZE))
    big = [(call, n) for call, n in writes if n >= SIZE // 2]
    small = [(call, n) for call, n in writes if n < SIZE // 2]
    # The frame is 16388 bytes (4-byte header); over TLS 16388 + 2 x 22 in two records.
    assert len(big) == 1, f"the frame took {len(big)} large writes: {writes}"
    assert not small, f"writes besides the frame's (its header alone?): {writes}"
    assert big[0][1] >= SIZE + 4, writes


def test_a_16_kib_frame_crosses_the_proxy_in_one_write_per_leg(wssd, tmp_path):
    """Through a `proxy` route a frame that is not whole in the relay's
    buffer when its header arrives is streamed; what of it is already
    readable goes out with it, so a 16 KiB frame leaves in one write to the
    upstream and one to the client (before: two on each leg)."""
    upstream = wssd.__class__(tmp_path / "upstream")
    try:
        up = upstream.start("--route", "/ws/up=echo", listen=False, http=True)
        srv = wssd.start("--route", f"/ws/up=proxy:ws://127.0.0.1:{up.http_port}")
        url, ctx = srv.wss_url("/ws/up"), srv.ssl_context()
        writes = writes_during_one_echo(srv, url, ctx, os.urandom(SIZE))
    finally:
        upstream.stop()
    big = [(call, n) for call, n in writes if n >= SIZE // 2]
    small = [(call, n) for call, n in writes if n < SIZE // 2]
    # One masked frame to the upstream (16392 bytes), one TLS write to the client.
    assert len(big) == 2, f"the frame took {len(big)} large writes: {writes}"
    assert not small, f"writes besides the frame's: {writes}"
