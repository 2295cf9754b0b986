"""HTTP/2 on the TLS listener and WebSockets over HTTP/2 (RFC 8441), with the
real binary and real HTTP/2 clients: curl --http2 and the `h2` library
(tests/python/h2ws.py: extended CONNECT, then RFC 6455 frames on the stream).

- curl negotiates h2 (ALPN) for the bundled client page and static files;
  an HTTP/1.1-only client still gets HTTP/1.1.
- 20 WebSockets on one TLS connection echo text and binary; 1009 on an
  oversize message; close codes both ways.
- A stream whose reader stopped (its flow-control window shut) does not stall
  the other streams, and is closed by the send timeout (counted).
- Rapid reset: a client opening and resetting streams in a loop gets GOAWAY
  (ENHANCE_YOUR_CALM, counted) while another client is served throughout.
- RFC 8441 on every WebSocket route kind: echo, chat, broadcast, exec, proxy
  to an HTTP/1.1 upstream; route auth (401 without the token) and the Origin
  check apply; malformed extended CONNECTs get clear 400s (426 for a wrong
  version); the upgrade counter is labelled by HTTP version.
"""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import threading
import time

import h2.errors
import h2.settings
import pytest

from conftest import http_request, metric_samples
from h2ws import Closed, H2Client, close_code, close_payload

TEXT, BINARY, CLOSE = 1, 2, 8


def upgrades(srv) -> dict[str, float]:
    return metric_samples(srv, "wssd_websocket_upgrades_total")


def echo_once(c: H2Client, path: str, text: bytes = b"hi") -> None:
    """One text message there and back, then a clean close (1000 both ways)."""
    sid, status, _ = c.connect_ws(path)
    assert status == 200
    c.send_ws(sid, TEXT, text)
    assert c.recv_ws(sid) == (TEXT, text)
    c.send_ws(sid, CLOSE, close_payload(1000))
    op, payload = c.recv_ws(sid)
    assert op == CLOSE and close_code(payload) == 1000


def test_curl_negotiates_h2_for_pages_and_http11_still_works(wssd, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.txt").write_text("static over h2\n")
    srv = wssd.start("--route", "/=static", "--route", f"/files=static:{site}",
                     "--route", "/ws/echo=echo")
    base = f"https://localhost:{srv.tls_port}"
    resolve = ["--resolve", f"localhost:{srv.tls_port}:127.0.0.1"]
    for path, want in (("/", b"<"), ("/files/a.txt", b"static over h2\n")):
        out = subprocess.run(["curl", "-sk", "--http2", *resolve, "-w", "\n%{http_version} %{http_code}",
                              base + path], capture_output=True, timeout=20)
        body, _, tail = out.stdout.rpartition(b"\n")
        assert tail == b"2 200", (path, tail, out.stderr)
        assert body.startswith(want)
    out = subprocess.run(["curl", "-sk", "--http1.1", *resolve, "-o", "/dev/null", "-w",
                          "%{http_version} %{http_code}", base + "/"], capture_output=True, timeout=20)
    assert out.stdout == b"1.1 200"
    assert metric_samples(srv, "wssd_http2_connections_total")[""] >= 2


def test_http2_off_offers_http11_only(wssd):
    srv = wssd.start("--route", "/=static", "--http2", "off")
    out = subprocess.run(["curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                          f"https://127.0.0.1:{srv.tls_port}/"], capture_output=True, timeout=20)
    assert out.stdout == b"1.1 200"
    # A client that offers only h2 is refused in the TLS handshake.
    with pytest.raises(ssl.SSLError, match="no application protocol"):
        H2Client(srv.tls_port)


def test_twenty_websockets_on_one_connection_echo_text_and_binary(wssd):
    srv = wssd.start("--route", "/ws/echo=echo")
    c = H2Client(srv.tls_port)
    assert c.conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
    streams = []
    for _ in range(20):
        sid, status, _ = c.connect_ws("/ws/echo")
        assert status == 200
        streams.append(sid)
    for i, sid in enumerate(streams):
        c.send_ws(sid, TEXT, f"text {i}".encode())
        c.send_ws(sid, BINARY, bytes([i]) * (1000 + i * 997))
    for i, sid in enumerate(streams):
        assert c.recv_ws(sid) == (TEXT, f"text {i}".encode())
        assert c.recv_ws(sid) == (BINARY, bytes([i]) * (1000 + i * 997))
    # Close codes both ways: the client closes with 4000 and gets it back.
    for sid in streams:
        c.send_ws(sid, CLOSE, close_payload(4000, "done"))
        op, payload = c.recv_ws(sid)
        assert op == CLOSE and close_code(payload) == 4000
    assert upgrades(srv).get('{http="2"}') == 20
    assert metric_samples(srv, "wssd_close_codes_total").get('{code="4000"}') == 20
    c.close()


def test_oversize_message_gets_1009_and_the_connection_lives_on(wssd):
    srv = wssd.start("--route", "/ws/echo=echo", "--max-message-size", "1000")
    c = H2Client(srv.tls_port)
    big, status, _ = c.connect_ws("/ws/echo")
    assert status == 200
    other, status, _ = c.connect_ws("/ws/echo")
    c.send_ws(big, BINARY, b"x" * 1001)
    op, payload = c.recv_ws(big)
    assert op == CLOSE and close_code(payload) == 1009, payload
    # The server closed one stream, not the connection.
    c.send_ws(other, TEXT, b"still here")
    assert c.recv_ws(other) == (TEXT, b"still here")
    assert metric_samples(srv, "wssd_close_codes_total").get('{code="1009"}') == 1
    c.close()


def test_a_stalled_reader_does_not_stall_others_and_times_out(wssd):
    """One stream stops reading (its window stays shut while the server
    echoes 256 KiB to it); the other streams keep echoing meanwhile, and the
    send timeout ends the stalled WebSocket (1008, counted). hyper cannot reset a stream holding unsent data, so the
    connection gets GOAWAY and closes; a new connection is served."""
    srv = wssd.start("--route", "/ws/echo=echo", "--send-timeout", "2")
    c = H2Client(srv.tls_port)
    stalled, _, _ = c.connect_ws("/ws/echo")
    live = [c.connect_ws("/ws/echo")[0] for _ in range(3)]
    c.paused.add(stalled)
    for _ in range(4):
        c.send_ws(stalled, BINARY, b"s" * 65536)
    started = time.monotonic()
    rounds = 0
    # Within the send timeout the others are served as usual.
    while time.monotonic() - started < 1.5:
        for sid in live:
            c.send_ws(sid, TEXT, f"round {rounds}".encode())
            assert c.recv_ws(sid, timeout=2) == (TEXT, f"round {rounds}".encode())
        rounds += 1
    assert rounds > 10
    with pytest.raises(Closed):
        c.wait(lambda: False, timeout=10)
    assert c.goaway_code is not None or c.eof
    assert time.monotonic() - started < 8
    assert metric_samples(srv, "wssd_close_codes_total").get('{code="1008"}') == 1
    # The other three ended with their connection.
    key = f'{{route="/ws/echo",listener="127.0.0.1:{srv.tls_port}"}}'
    deadline = time.monotonic() + 5
    while metric_samples(srv, "wssd_connections_open").get(key, 0) != 0:
        assert time.monotonic() < deadline, "sessions outlived their connection"
        time.sleep(0.05)
    c.close()
    echo_once(H2Client(srv.tls_port), "/ws/echo")


def test_rapid_reset_is_cut_off_and_others_are_served(wssd):
    srv = wssd.start("--route", "/ws/echo=echo", "--route", "/=static")
    calm = H2Client(srv.tls_port)
    served = []
    stop = threading.Event()
    serving = threading.Event()

    def other_client():
        c = H2Client(srv.tls_port)
        while not stop.is_set():
            status, _, _ = c.request("/")
            served.append(status)
            serving.set()
        c.close()

    t = threading.Thread(target=other_client)
    t.start()
    assert serving.wait(10)
    abuser = H2Client(srv.tls_port)
    opened = 0
    began = time.monotonic()
    deadline = time.monotonic() + 10
    try:
        while opened < 20000 and time.monotonic() < deadline and abuser.goaway is None:
            for _ in range(100):
                sid = abuser.conn.get_next_available_stream_id()
                abuser.conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                                               (":authority", abuser.authority), (":path", "/")],
                                         end_stream=True)
                abuser.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                opened += 1
            abuser.flush()
            abuser.pump(0.001)
        while abuser.goaway is None and not abuser.eof and time.monotonic() < deadline:
            abuser.pump(0.2)
    except OSError:  # the server closed it mid-write (ssl.SSLError is one)
        while abuser.goaway is None and not abuser.eof and time.monotonic() < deadline:
            abuser.pump(0.2)
    finally:
        stop.set()
        t.join(15)
    print(f"rapid reset: GOAWAY after {opened} streams opened and reset in "
          f"{time.monotonic() - began:.2f}s; the other client got {len(served)} answers")
    assert abuser.goaway is not None, f"no GOAWAY after {opened} reset streams"
    assert abuser.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert opened < 20000
    assert len(served) > 1 and all(s == 200 for s in served)
    assert calm.request("/")[0] == 200
    errors = metric_samples(srv, "wssd_http2_connection_errors_total")
    assert errors.get('{reason="enhance_your_calm"}') == 1, errors


def test_streams_the_server_must_reset_are_bounded_too(wssd):
    """The other reset flood (CVE-2025-8671, "MadeYouReset"): requests the
    server must reset itself (here malformed: a connection-specific header,
    forbidden in HTTP/2). Past the bound the connection gets GOAWAY
    ENHANCE_YOUR_CALM; another client is served."""
    from hpack import Encoder
    from hyperframe.frame import HeadersFrame
    srv = wssd.start("--route", "/ws/echo=echo")
    abuser = H2Client(srv.tls_port)
    encoder = Encoder()  # the client library sent no headers on this connection
    sid, sent = 1, 0
    got = bytearray()
    abuser.sock.settimeout(0.01)
    try:
        while sent < 5000:
            out = bytearray()
            for _ in range(50):
                block = encoder.encode([(":method", "GET"), (":scheme", "https"),
                                        (":authority", abuser.authority), (":path", "/"),
                                        ("connection", "close")])
                out += HeadersFrame(sid, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()
                sid += 2
                sent += 1
            abuser.sock.sendall(bytes(out))
            try:
                chunk = abuser.sock.recv(65536)
                if not chunk:
                    break
                got += chunk
            except (TimeoutError, ssl.SSLWantReadError):
                pass
    except OSError:
        pass
    # The server's frames (read raw: the client library never opened these
    # streams): RST_STREAMs, then GOAWAY.
    abuser.sock.settimeout(5)
    try:
        while chunk := abuser.sock.recv(65536):
            got += chunk
    except OSError:
        pass
    resets, goaway, pos = 0, None, 0
    while pos + 9 <= len(got):
        length = int.from_bytes(got[pos:pos + 3], "big")
        kind = got[pos + 3]
        if kind == 0x3:
            resets += 1
        elif kind == 0x7:
            goaway = int.from_bytes(got[pos + 13:pos + 17], "big")
        pos += 9 + length
    print(f"server-side resets: {resets} RST_STREAM, then GOAWAY {goaway}, after {sent} malformed requests")
    assert goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert 0 < resets <= 256 + 1 and sent < 5000
    echo_once(H2Client(srv.tls_port), "/ws/echo")
    errors = metric_samples(srv, "wssd_http2_connection_errors_total")
    assert errors.get('{reason="enhance_your_calm"}') == 1, errors


def test_rfc8441_on_every_websocket_route_kind(wssd, tmp_path):
    upstream = wssd.__class__(tmp_path / "upstream")
    try:
        up = upstream.start("--route", "/ws/up=echo", "--route", "/app=static", listen=False, http=True)
        srv = wssd.start("--route", "/ws/echo=echo", "--route", "/ws/chat=chat",
                         "--route", "/ws/news=broadcast", "--route", "/ws/cat=exec:cat",
                         "--route", f"/ws/up=proxy:ws://127.0.0.1:{up.http_port}",
                         "--route", f"/app=proxy:http://127.0.0.1:{up.http_port}",
                         "--publish-token", "pt-0123456789abcdef0123")
        c = H2Client(srv.tls_port)
        echo_once(c, "/ws/echo")
        echo_once(c, "/ws/cat", b"through cat")
        echo_once(c, "/ws/up", b"through the proxy")
        # Plain HTTP through the proxy too (an HTTP/2 request, HTTP/1.1 upstream).
        status, headers, body = c.request("/app/")
        assert status == 200 and body.lstrip().lower().startswith(b"<!doctype html"), (status, body[:80])
        sid, status, _ = c.connect_ws("/ws/chat")
        assert status == 200
        c.send_ws(sid, TEXT, json.dumps({"type": "join", "room": "r", "username": "h2user"}).encode())
        while True:
            op, payload = c.recv_ws(sid)
            event = json.loads(payload)
            if event.get("type") == "joined":
                assert "h2user" in event["members"]
                break
        news, status, _ = c.connect_ws("/ws/news")
        assert status == 200
        status, _, _ = http_request("POST", f"http://127.0.0.1:{srv.admin_port}/publish/ws/news",
                                    b"breaking", {"Authorization": "Bearer pt-0123456789abcdef0123"})
        assert status in (200, 202)
        assert c.recv_ws(news) == (TEXT, b"breaking")
        assert upgrades(srv).get('{http="2"}') == 5
        c.close()
    finally:
        upstream.stop()


def test_auth_and_origin_apply_on_http2(wssd, tmp_path):
    token = "h2-client-token-0123456789abcdef"
    (tmp_path / "tokens.txt").write_text(f"h2client:{token}\n")
    config = tmp_path / "auth.toml"
    config.write_text('[[route]]\npath = "/ws/echo"\nkind = "echo"\n'
                      f'auth = {{ kind = "token", tokens_file = "{tmp_path}/tokens.txt" }}\n')
    srv = wssd.start("--config", str(config))
    c = H2Client(srv.tls_port)
    sid, status, headers = c.connect_ws("/ws/echo")
    assert status == 401 and headers.get("www-authenticate", "").startswith("Bearer")
    sid, status, _ = c.connect_ws("/ws/echo", [("authorization", f"Bearer {token}")])
    assert status == 200
    # Origin: the page's own https origin passes, another site's does not.
    auth = [("authorization", f"Bearer {token}")]
    _, status, _ = c.connect_ws("/ws/echo", auth + [("origin", f"https://localhost:{srv.tls_port}")])
    assert status == 200
    _, status, _ = c.connect_ws("/ws/echo", auth + [("origin", "https://evil.example")])
    assert status == 403
    c.close()


@pytest.mark.parametrize("protocol,headers,status,text", [
    ("webtransport", [], 400, b"unsupported :protocol"),
    ("websocket", [("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")], 400, b"not used over HTTP/2"),
])
def test_malformed_extended_connect_gets_a_clear_refusal(wssd, protocol, headers, status, text):
    srv = wssd.start("--route", "/ws/echo=echo")
    c = H2Client(srv.tls_port)
    sid, got, _ = c.connect_ws("/ws/echo", headers, protocol=protocol)
    assert got == status
    s = c.stream(sid)
    c.wait(lambda: s.ended)
    assert text in bytes(s.data)
    c.close()


def test_wrong_websocket_version_over_http2_gets_426(wssd):
    srv = wssd.start("--route", "/ws/echo=echo")
    c = H2Client(srv.tls_port)
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                              (":authority", c.authority), (":path", "/ws/echo"),
                              ("sec-websocket-version", "8")])
    c.flush()
    s = c.stream(sid)
    c.wait(lambda: s.headers is not None)
    assert s.headers[":status"] == "426" and s.headers["sec-websocket-version"] == "13"
    c.close()


def test_shutdown_closes_http2_websockets_with_1001(wssd):
    srv = wssd.start("--route", "/ws/echo=echo")
    c = H2Client(srv.tls_port)
    streams = [c.connect_ws("/ws/echo")[0] for _ in range(2)]
    srv.proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    for sid in streams:
        op, payload = c.recv_ws(sid)
        assert op == CLOSE and close_code(payload) == 1001
        c.send_ws(sid, CLOSE, payload)
        c.conn.end_stream(sid)  # RFC 8441 section 5: the stream ends with the socket
        c.flush()
    # Then GOAWAY (NO_ERROR), and the server is gone well within the drain
    # timeout.
    deadline = time.monotonic() + 10
    while not c.eof and time.monotonic() < deadline:
        c.pump(0.2)
    assert c.goaway_code == 0
    assert srv.proc.wait(15) == 0
    assert time.monotonic() - began < 5


def test_idle_connections_close_but_websockets_keep_theirs_open(wssd):
    """As an idle HTTP/1.1 keep-alive connection, an HTTP/2 connection with
    nothing in progress for the handshake timeout is closed (GOAWAY); one
    that carries a WebSocket is not, however quiet the socket."""
    srv = wssd.start("--route", "/ws/echo=echo", "--route", "/=static", "--handshake-timeout", "1")
    idle = H2Client(srv.tls_port)
    assert idle.request("/")[0] == 200
    began = time.monotonic()
    while not idle.eof and time.monotonic() - began < 10:
        idle.pump(0.2)
    assert idle.goaway_code == 0 and 0.5 < time.monotonic() - began < 5
    busy = H2Client(srv.tls_port)
    sid, status, _ = busy.connect_ws("/ws/echo")
    assert status == 200
    busy.pump(2.5)
    assert busy.goaway_code is None and not busy.eof
    busy.send_ws(sid, TEXT, b"still open")
    assert busy.recv_ws(sid) == (TEXT, b"still open")
    # A connection that never sends a request is closed too.
    silent = H2Client(srv.tls_port)
    began = time.monotonic()
    while not silent.eof and time.monotonic() - began < 10:
        silent.pump(0.2)
    assert silent.eof and time.monotonic() - began < 5


def refused_ws(c: H2Client, path: str) -> tuple[int, str]:
    """An extended CONNECT the server answers with an error: (status, text)."""
    sid, status, _ = c.connect_ws(path)
    if status == 200:
        return status, "admitted"
    s = c.stream(sid)
    c.wait(lambda: s.ended or s.reset is not None)
    return status, s.data.decode()


def admitted_again(c: H2Client, path: str, timeout: float = 5.0) -> int:
    """A WebSocket stream admitted once a slot has been freed (the session
    lets go of it just after the stream ends): its stream id."""
    deadline = time.monotonic() + timeout
    while True:
        sid, status, _ = c.connect_ws(path)
        if status == 200:
            return sid
        assert status == 503 and time.monotonic() < deadline, "the slot was not released"
        time.sleep(0.05)


def test_websockets_over_http2_count_against_the_per_ip_cap(wssd):
    """The HTTP/2 connection holds its per-IP slot and each WebSocket stream
    one more while it is open, as on connections of their own: with a cap of
    3, one connection carries 2 WebSockets, the third gets 503 naming the
    option (counted as a per-IP refusal) while the others keep working; a
    stream that closes, is reset or whose connection drops frees its slot."""
    srv = wssd.start("--route", "/ws/echo=echo", "--max-connections-per-ip", "3")
    c = H2Client(srv.tls_port)
    a, status, _ = c.connect_ws("/ws/echo")
    assert status == 200
    b, status, _ = c.connect_ws("/ws/echo")
    assert status == 200
    status, text = refused_ws(c, "/ws/echo")
    assert status == 503, text
    assert "--max-connections-per-ip 3 reached" in text, text
    refused = metric_samples(srv, "wssd_connections_refused_total")
    assert refused.get('{reason="per_ip"}') == 1, refused
    assert metric_samples(srv, "wssd_handshake_failures_total").get('{reason="limit"}') == 1
    # The connection and its WebSockets go on.
    for sid in (a, b):
        c.send_ws(sid, TEXT, b"still here")
        assert c.recv_ws(sid) == (TEXT, b"still here")
    assert c.request("/nothing-here")[0] == 404
    # The address is full: a connection of its own is refused at accept too.
    with pytest.raises((ssl.SSLError, OSError)):
        H2Client(srv.tls_port, timeout=3)
    # A WebSocket that closes frees its slot.
    c.send_ws(a, CLOSE, close_payload(1000))
    assert c.recv_ws(a)[0] == CLOSE
    a = admitted_again(c, "/ws/echo")
    c.send_ws(a, TEXT, b"admitted again")
    assert c.recv_ws(a) == (TEXT, b"admitted again")
    # So does one the client resets.
    c.conn.reset_stream(a)
    c.flush()
    a = admitted_again(c, "/ws/echo")
    # And the client dropping the connection frees all three.
    c.sock.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            c = H2Client(srv.tls_port, timeout=3)
            break
        except (ssl.SSLError, OSError, Closed):
            assert time.monotonic() < deadline, "the dropped connection's slots were not released"
            time.sleep(0.05)
    for _ in range(2):
        admitted_again(c, "/ws/echo")
    assert refused_ws(c, "/ws/echo")[0] == 503
    c.close()


def test_behind_the_proxy_protocol_http2_websockets_count_for_the_carried_address(wssd):
    """Behind a balancer speaking the PROXY protocol, a WebSocket stream is
    charged to the client address its connection's header gave, not to the
    balancer: one client's second stream is refused (cap 2: its connection
    and one WebSocket), another client's through the same balancer is not."""
    srv = wssd.start("--route", "/ws/echo=echo", "--max-connections-per-ip", "2",
                     "--proxy-protocol", "--trusted-proxy", "127.0.0.1")
    port = srv.tls_port

    def client(ip: str) -> H2Client:
        return H2Client(port, proxy_header=f"PROXY TCP4 {ip} 127.0.0.1 40000 {port}\r\n".encode())

    a = client("192.0.2.1")
    sid, status, _ = a.connect_ws("/ws/echo")
    assert status == 200
    status, text = refused_ws(a, "/ws/echo")
    assert status == 503 and "--max-connections-per-ip 2 reached" in text, text
    b = client("192.0.2.2")
    other, status, _ = b.connect_ws("/ws/echo")
    assert status == 200
    for c, s in ((a, sid), (b, other)):
        c.send_ws(s, TEXT, b"still here")
        assert c.recv_ws(s) == (TEXT, b"still here")
    assert metric_samples(srv, "wssd_connections_refused_total").get('{reason="per_ip"}') == 1
    a.close()
    b.close()


def test_websockets_over_http2_take_a_token_of_the_per_ip_rate(wssd):
    """--connection-rate-per-ip 1 (burst 2): the connection takes a token and
    each WebSocket stream one more, so within a few streams one gets 503
    naming the option, counted as a rate refusal; the others go on."""
    srv = wssd.start("--route", "/ws/echo=echo", "--connection-rate-per-ip", "1")
    c = H2Client(srv.tls_port)
    admitted = []
    for _ in range(4):
        sid, status, _ = c.connect_ws("/ws/echo")
        if status != 200:
            break
        admitted.append(sid)
    assert status == 503, f"{len(admitted)} WebSockets admitted at a rate of 1 per second"
    s = c.stream(sid)
    c.wait(lambda: s.ended or s.reset is not None)
    assert "--connection-rate-per-ip 1 exceeded" in s.data.decode(), s.data
    assert metric_samples(srv, "wssd_connections_refused_total").get('{reason="rate"}') == 1
    for sid in admitted:
        c.send_ws(sid, TEXT, b"still here")
        assert c.recv_ws(sid) == (TEXT, b"still here")
    c.close()
