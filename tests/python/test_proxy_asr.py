"""The seeds' case end to end: a real FastAPI/uvicorn app (page at /, a
WebSocket at /ws/asr answering binary audio chunks with JSON) behind one
wssd proxy route over wss://, with X-Forwarded-* checked at the backend."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port, http_get, port_open, run, ws_connect

APP = Path(__file__).parent / "apps" / "asr_app.py"


@pytest.fixture
def asr_backend():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(APP), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not port_open(port):
        if proc.poll() is not None:
            raise AssertionError(f"ASR app exited: {proc.stderr.read().decode()}")
        assert time.monotonic() < deadline, "ASR app did not start"
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def test_fastapi_app_behind_one_proxy_route(wssd, asr_backend):
    srv = wssd.start("--route", f"/=proxy:http://127.0.0.1:{asr_backend}")
    ctx = srv.ssl_context()

    status, headers, body = http_get(srv.https_url("/", host="localhost"), context=ctx)
    assert status == 200
    assert b"speak into the microphone" in body

    async def stream():
        replies = []
        async with ws_connect(srv.wss_url("/ws/asr", host="localhost"), ssl=ctx) as ws:
            for i in range(20):
                await ws.send(bytes([i % 256]) * 3200)  # 100 ms of 16 kHz 16-bit mono
                replies.append(json.loads(await ws.recv()))
        return replies

    replies = run(stream())
    assert [r["bytes"] for r in replies] == [3200] * 20
    assert replies[-1]["total"] == 64000

    status, _, body = http_get(srv.https_url("/seen", host="localhost"), context=ctx)
    seen = json.loads(body)
    for leg in ("page", "ws"):
        h = seen[leg]
        assert h.get("x-forwarded-for") == "127.0.0.1", h
        assert h.get("x-forwarded-proto") == "https", h
        assert h.get("x-forwarded-host", "").startswith("localhost:"), h
        assert h.get("x-real-ip") == "127.0.0.1", h


def test_spoofed_forwarded_headers_are_replaced(wssd, asr_backend):
    srv = wssd.start("--route", f"/=proxy:http://127.0.0.1:{asr_backend}")
    ctx = srv.ssl_context()

    async def connect_spoofed():
        async with ws_connect(srv.wss_url("/ws/asr", host="localhost"), ssl=ctx,
                              additional_headers={"X-Forwarded-For": "6.6.6.6",
                                                  "X-Forwarded-Proto": "gopher"}) as ws:
            await ws.send(b"\x00" * 10)
            await ws.recv()

    run(connect_spoofed())
    _, _, body = http_get(srv.https_url("/seen", host="localhost"), context=ctx)
    h = json.loads(body)["ws"]
    assert h["x-forwarded-for"] == "127.0.0.1", h
    assert h["x-forwarded-proto"] == "https", h



def test_trusted_proxy_chain_is_kept(wssd, asr_backend):
    """From a trusted proxy the incoming chain is kept and appended to."""
    srv = wssd.start("--route", f"/=proxy:http://127.0.0.1:{asr_backend}",
                     "--trusted-proxy", "127.0.0.0/8")
    ctx = srv.ssl_context()

    async def connect_spoofed():
        async with ws_connect(srv.wss_url("/ws/asr", host="localhost"), ssl=ctx,
                              additional_headers={"X-Forwarded-For": "6.6.6.6"}) as ws:
            await ws.send(b"\x00" * 10)
            await ws.recv()

    run(connect_spoofed())
    _, _, body = http_get(srv.https_url("/seen", host="localhost"), context=ctx)
    h = json.loads(body)["ws"]
    assert h["x-forwarded-for"] == "6.6.6.6, 127.0.0.1", h
    assert h["x-real-ip"] == "6.6.6.6", h
