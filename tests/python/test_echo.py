"""Echo over wss:// (verified TLS) and ws://, message size limits."""

import os

import pytest
from websockets.exceptions import ConnectionClosed

from conftest import MiB, run, ws_connect


async def echo_roundtrip(url, ssl=None):
    async with ws_connect(url, ssl=ssl) as ws:
        await ws.send("hello, wssd ✓")
        text = await ws.recv()
        payload = bytes(range(256)) * 4
        await ws.send(payload)
        binary = await ws.recv()
    return text, binary


def test_text_and_binary_echo_over_verified_wss(wssd):
    srv = wssd.start()
    ctx = srv.ssl_context()
    for host in ("localhost", "127.0.0.1"):
        text, binary = run(echo_roundtrip(srv.wss_url("/ws/echo", host=host), ssl=ctx))
        # text stays text (str), binary stays binary (bytes)
        assert text == "hello, wssd ✓", host
        assert binary == bytes(range(256)) * 4, host


def test_large_message_under_limit_echoes_intact(wssd):
    srv = wssd.start()

    async def main():
        async with ws_connect(srv.wss_url(), ssl=srv.ssl_context()) as ws:
            payload = os.urandom(3 * MiB)
            await ws.send(payload)
            echoed = await ws.recv()
            assert isinstance(echoed, bytes)
            assert len(echoed) == len(payload)
            assert echoed == payload
            # a message of exactly --max-message-size (4 MiB by default) is accepted
            payload = os.urandom(4 * MiB)
            await ws.send(payload)
            assert await ws.recv() == payload

    run(main(), timeout=40)


def test_message_over_limit_closes_with_1009(wssd):
    srv = wssd.start()

    async def main():
        async with ws_connect(srv.wss_url(), ssl=srv.ssl_context()) as ws:
            await ws.send("small first")
            assert await ws.recv() == "small first"
            try:
                await ws.send(os.urandom(5 * MiB))
                reply = await ws.recv()
            except ConnectionClosed as exc:
                return exc
            pytest.fail(f"server answered a 5 MiB message (limit 4 MiB) with {len(reply)} bytes "
                        "instead of closing")

    exc = run(main(), timeout=40)
    assert exc.rcvd is not None, f"server dropped the connection without a close frame: {exc!r}"
    assert exc.rcvd.code == 1009, f"expected close 1009 (message too big), got {exc.rcvd}"
    # the server itself survives and keeps serving
    text, _ = run(echo_roundtrip(srv.wss_url(), ssl=srv.ssl_context()))
    assert text == "hello, wssd ✓"


def test_ws_and_wss_side_by_side(wssd):
    srv = wssd.start(http=True)
    text, binary = run(echo_roundtrip(srv.wss_url(), ssl=srv.ssl_context()))
    assert (text, binary) == ("hello, wssd ✓", bytes(range(256)) * 4)
    text, binary = run(echo_roundtrip(srv.ws_url()))
    assert (text, binary) == ("hello, wssd ✓", bytes(range(256)) * 4)
