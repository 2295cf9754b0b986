"""Per-WebSocket message rate with a real `websockets` client: a client that
floods an echo route over wss:// is closed with 1008 and a reason naming the
limit; one that keeps to the rate is served to the end."""

import asyncio

from websockets.exceptions import ConnectionClosed

from conftest import metric_samples, run, ws_connect

ARGS = ("--route", "/e=echo", "--message-rate", "50", "--message-burst", "20")


def test_flood_closed_with_1008_and_a_polite_client_served(wssd):
    srv = wssd.start(*ARGS)
    ctx = srv.ssl_context()

    async def flooder():
        async with ws_connect(srv.wss_url("/e"), ssl=ctx) as ws:
            echoed = 0

            async def read():
                nonlocal echoed
                try:
                    async for _ in ws:
                        echoed += 1
                except ConnectionClosed:
                    pass

            reader = asyncio.create_task(read())
            try:
                for _ in range(1000):
                    await ws.send("flood")
            except ConnectionClosed:
                pass
            await reader
            return ws.close_code, ws.close_reason, echoed

    async def polite():
        async with ws_connect(srv.wss_url("/e"), ssl=ctx) as ws:
            for i in range(30):  # 25 per second, half the rate
                await ws.send(f"polite {i}")
                assert await ws.recv() == f"polite {i}"
                await asyncio.sleep(0.04)
        return ws.close_code

    async def main():
        return await asyncio.gather(flooder(), polite())

    (code, reason, echoed), polite_code = run(main())
    assert code == 1008
    assert reason == "message rate exceeded: 50/s, burst 20 (--message-rate)"
    assert 20 <= echoed < 1000
    assert polite_code == 1000
    samples = metric_samples(srv, "wssd_rate_limited_total")
    assert samples == {'{route="/e",limit="messages"}': 1.0}, samples
