"""System calls of one connection's TLS handshake (issue 16, connects).

After the server writes its flight (ServerHello ... Finished) the client
cannot have answered yet: a read then finds nothing. The server must wait
for the socket's next readiness instead of asking the kernel: a `recvfrom`
returning EAGAIN there is a system call per connection for nothing. (The
first read of a connection, which tells TLS from plain HTTP, used tokio's
`try_read`, which keeps the socket marked readable after a short read, so
rustls's read after the flight went to the kernel.)

The session ticket the server sends after the client's Finished leaves
with the first reply (the 101), in one `writev`: before, tokio-rustls wrote
and flushed it on its own, then the reply went in a second write (a system
call and a TCP segment per connection, whose receive path on loopback runs
on the sender's CPU).

Checked with strace attached to the real server while a wss:// client
handshakes (its Finished sent 300 ms late; or with its request in the same
segment, as a busy client's arrive) and closes.
"""

import socket
import ssl
import time

import pytest

from strace_calls import needs_strace, traced_calls

pytestmark = needs_strace


def traced_socket_calls(pid, scenario):
    """(call, fd, result, rest) of every read and write of `pid`'s threads while scenario() runs."""
    return traced_calls(pid, ["recvfrom", "writev", "sendto", "sendmsg", "read", "write"], scenario)


def handshake(port, ctx, finished_delay=0.0, then=b""):
    """A TLS 1.3 handshake over memory BIOs: the client's Finished leaves
    `finished_delay` seconds after the server's flight arrived, in one
    segment with `then` (application data). Returns the socket and TLS object."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    flight_seen = False
    while True:
        try:
            tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        if done and then:
            tls.write(then)
        out = outgoing.read()
        if out:
            if flight_seen:
                time.sleep(finished_delay)
            sock.sendall(out)
        if done:
            break
        data = sock.recv(65536)
        assert data, "the server closed during the handshake"
        incoming.write(data)
        flight_seen = True
    assert tls.version() == "TLSv1.3"
    return sock, tls, incoming


def handshake_with_a_slow_finished(port, ctx):
    """The client's Finished leaves 300 ms after the server's flight arrived
    (a client on a slow link): the server's read after its flight surely
    finds nothing. Then the client closes."""
    sock, _, _ = handshake(port, ctx, finished_delay=0.3)
    time.sleep(0.1)
    sock.close()


def upgrade_with_the_finished(port, ctx):
    """The client's Finished and its upgrade request in one segment; waits
    for the 101, then closes."""
    request = (b"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
    sock, tls, incoming = handshake(port, ctx, then=request)
    got = b""
    while b"\r\n\r\n" not in got:
        try:
            got += tls.read(65536)
            continue
        except ssl.SSLWantReadError:
            pass
        data = sock.recv(65536)
        assert data, f"the server closed before its answer: {got!r}"
        incoming.write(data)
    assert got.startswith(b"HTTP/1.1 101"), got
    sock.close()


def test_no_empty_read_after_the_server_flight(wssd):
    srv = wssd.start()
    port, ctx = srv.tls_port, srv.ssl_context()
    calls = traced_socket_calls(srv.proc.pid, lambda: handshake_with_a_slow_finished(port, ctx))
    # The connection's socket: the one the first writev (the server's flight) went to.
    flight = next((i for i, c in enumerate(calls) if c[0] == "writev" and c[2] > 0), None)
    assert flight is not None, f"no server flight seen: {calls}"
    fd = calls[flight][1]
    # The reads of that socket after the flight, until one returns the client's Finished.
    after = []
    for call in calls[flight + 1:]:
        if call[1] != fd or call[0] not in ("recvfrom", "read"):
            continue
        after.append(call)
        if call[2] > 0:
            break
    assert after and after[-1][2] > 0, f"the client's Finished was not read: {calls}"
    empty = [c for c in after if c[2] < 0]
    assert not empty, f"reads that found nothing after the flight: {empty} (all: {calls})"


def test_the_ticket_leaves_with_the_101(wssd):
    srv = wssd.start()
    port, ctx = srv.tls_port, srv.ssl_context()
    calls = traced_socket_calls(srv.proc.pid, lambda: upgrade_with_the_finished(port, ctx))
    writes = [c for c in calls if c[0] in ("writev", "sendto", "sendmsg", "write") and c[2] > 0]
    assert writes, f"no server writes seen: {calls}"
    fd = writes[0][1]
    sizes = [c[2] for c in writes if c[1] == fd]
    # The flight, then one write: the ticket (about 100 bytes) and the 101 (about 190).
    assert len(sizes) >= 2, f"writes of the connection: {sizes} (all: {calls})"
    assert sizes[1] > 250, f"the ticket and the 101 left in separate writes: {sizes} (all: {calls})"
