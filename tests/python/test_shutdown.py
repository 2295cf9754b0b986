"""SIGTERM drains open WebSockets with close 1001 and exits 0."""

import asyncio
import signal

from websockets.exceptions import ConnectionClosed

from conftest import run, ws_connect


def test_sigterm_closes_with_1001_and_exits_0(wssd):
    srv = wssd.start()

    async def main():
        async with ws_connect(srv.wss_url(), ssl=srv.ssl_context()) as ws:
            await ws.send("before shutdown")
            assert await ws.recv() == "before shutdown"
            srv.signal(signal.SIGTERM)
            try:
                msg = await asyncio.wait_for(ws.recv(), 15)
            except ConnectionClosed as exc:
                return exc
            raise AssertionError(f"expected the connection to close, got a message {msg!r}")

    exc = run(main())
    assert exc.rcvd is not None, f"server dropped the connection without a close frame: {exc!r}"
    assert exc.rcvd.code == 1001, f"expected close 1001 (going away), got {exc.rcvd}"
    status = srv.wait(15)
    assert status == 0, f"wssd exited with status {status} after SIGTERM\n{srv.log_tail()}"
