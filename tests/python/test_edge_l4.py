"""The listener edge with a real WebSocket client (issue 12): ws:// sent to
the TLS port gets a readable 400, and with --redirect-http a ws:// client
that follows redirects ends up on wss://."""

import ssl

import pytest
from websockets.exceptions import InvalidStatus

from conftest import run, ws_connect


async def echo_once(url, **kwargs):
    async with ws_connect(url, **kwargs) as ws:
        await ws.send("over TLS")
        return await ws.recv()


def test_ws_to_the_tls_port_gets_a_readable_400(wssd):
    srv = wssd.start()
    with pytest.raises(InvalidStatus) as refused:
        run(echo_once(f"ws://127.0.0.1:{srv.tls_port}/ws/echo"), timeout=15)
    response = refused.value.response
    assert response.status_code == 400
    assert f"This port speaks HTTPS. Use https://127.0.0.1:{srv.tls_port}/".encode() in response.body


def test_redirect_http_sends_a_ws_client_to_wss(wssd, monkeypatch):
    srv = wssd.start("--redirect-http", http=True)
    url = f"ws://localhost:{srv.http_port}/ws/echo"
    # Without trust in the server's certificate the followed redirect fails:
    # the client never talks in clear.
    with pytest.raises(ssl.SSLCertVerificationError):
        run(echo_once(url), timeout=15)
    # websockets takes no `ssl` argument for a ws:// URL; the default
    # context it builds for the wss:// redirect reads SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(srv.cert_path))
    assert run(echo_once(url)) == "over TLS"
