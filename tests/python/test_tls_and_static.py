"""TLS is real (verified by the client, refused without the right trust) and
the bundled client page is served over https."""

import ssl

import pytest
from websockets.exceptions import InvalidHandshake, InvalidMessage

from conftest import http_get, run, ws_connect


async def connect_once(url, **kwargs):
    async with ws_connect(url, **kwargs) as ws:
        await ws.send("x")
        return await ws.recv()


def test_self_signed_certificate_in_state_dir(wssd):
    srv = wssd.start()
    assert srv.cert_path.is_file()
    pem = srv.cert_path.read_text()
    assert "-----BEGIN CERTIFICATE-----" in pem
    # the server presents exactly that certificate
    presented = ssl.get_server_certificate(("127.0.0.1", srv.tls_port))
    assert ssl.PEM_cert_to_DER_cert(presented) == ssl.PEM_cert_to_DER_cert(pem)


def test_wrong_ca_fails_verification(wssd):
    srv = wssd.start()
    system_trust = ssl.create_default_context()  # does not know the self-signed cert
    with pytest.raises(ssl.SSLCertVerificationError):
        run(connect_once(srv.wss_url(host="localhost"), ssl=system_trust))
    with pytest.raises(ssl.SSLCertVerificationError):
        run(connect_once(srv.wss_url(host="127.0.0.1"), ssl=system_trust))


def test_hostname_not_in_certificate_fails_verification(wssd):
    srv = wssd.start()
    with pytest.raises(ssl.SSLCertVerificationError):
        run(connect_once(srv.wss_url(), ssl=srv.ssl_context(), server_hostname="not-in-the-cert.example"))


def test_tls_listener_does_not_speak_plain_websocket(wssd):
    srv = wssd.start()
    plain_to_tls = f"ws://127.0.0.1:{srv.tls_port}/ws/echo"
    with pytest.raises((InvalidHandshake, InvalidMessage, OSError, EOFError)):
        run(connect_once(plain_to_tls, open_timeout=5), timeout=15)


def test_bundled_page_over_https(wssd):
    srv = wssd.start()
    ctx = srv.ssl_context()
    status, headers, body = http_get(srv.https_url("/", host="localhost"), context=ctx)
    assert status == 200
    assert headers.get("Content-Type", "").startswith("text/html"), headers.get("Content-Type")
    assert b"/ws/echo" in body

    status, headers, body = http_get(srv.https_url("/app.js"), context=ctx)
    assert status == 200
    assert "javascript" in headers.get("Content-Type", ""), headers.get("Content-Type")

    status, _, _ = http_get(srv.https_url("/nope"), context=ctx)
    assert status == 404
