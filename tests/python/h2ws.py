"""A small HTTP/2 client for the tests: one TLS connection (ALPN h2) driven by
the `h2` library (sans-IO, so flow control is the test's to hold back), plain
requests, and WebSockets over HTTP/2 (RFC 8441: extended CONNECT with
`:protocol websocket`, then RFC 6455 frames on the stream's DATA).

Single-threaded: every wait pumps the socket and files what arrived per
stream. Received DATA is acknowledged (WINDOW_UPDATE) as it arrives, except on
streams listed in `paused` (a reader that stopped reading).
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


class Closed(Exception):
    """The connection ended (GOAWAY or EOF) while waiting."""


class Stream:
    def __init__(self) -> None:
        self.headers: dict[str, str] | None = None
        self.data = bytearray()
        self.ended = False
        self.reset: int | None = None


class H2Client:
    def __init__(self, port: int, host: str = "localhost", timeout: float = 10.0,
                 context: ssl.SSLContext | None = None,
                 proxy_header: bytes | None = None) -> None:
        """`proxy_header`: sent before TLS, as a balancer speaking the PROXY
        protocol would."""
        ctx = context or ssl.create_default_context()
        if context is None:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if proxy_header is not None:
            raw.sendall(proxy_header)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        assert self.sock.selected_alpn_protocol() == "h2", self.sock.selected_alpn_protocol()
        self.authority = f"{host}:{port}"
        self.timeout = timeout
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.streams: dict[int, Stream] = {}
        self.paused: set[int] = set()
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.goaway_code: int | None = None
        self.raw: bytearray | None = None
        self.eof = False
        self.remote_settings_seen = False
        self.wait(lambda: self.remote_settings_seen)

    # --- plumbing -------------------------------------------------------
    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self, timeout: float) -> None:
        """Reads what arrives within `timeout` (at least one read)."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return
        except (ConnectionResetError, ssl.SSLError, OSError):
            self.eof = True
            return
        if not chunk:
            self.eof = True
            return
        if self.raw is not None:
            self.raw_frames(chunk)
            return
        try:
            events = self.conn.receive_data(chunk)
        except h2.exceptions.ProtocolError:
            # The library refuses a PING after GOAWAY (a server's graceful
            # shutdown sends both): from here on, read frames raw.
            self.raw = bytearray()
            self.raw_frames(chunk)
            return
        for ev in events:
            self.on_event(ev)
        self.flush()

    def on_event(self, ev) -> None:
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            self.remote_settings_seen = True
        elif isinstance(ev, h2.events.ResponseReceived):
            self.stream(ev.stream_id).headers = dict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            s = self.stream(ev.stream_id)
            s.data += ev.data
            if ev.stream_id not in self.paused:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif ev.flow_controlled_length:
                # A paused stream's window stays shut; the connection's
                # reopens, as a real client's does for its other streams.
                self.conn.increment_flow_control_window(ev.flow_controlled_length)
        elif isinstance(ev, h2.events.StreamEnded):
            self.stream(ev.stream_id).ended = True
        elif isinstance(ev, h2.events.StreamReset):
            self.stream(ev.stream_id).reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
            self.goaway_code = ev.error_code

    def raw_frames(self, chunk: bytes) -> None:
        """Raw mode: notes GOAWAY and answers PINGs (the chunk that failed in
        the library is read again from its start, which is a frame's)."""
        self.raw += chunk
        while len(self.raw) >= 9:
            length = int.from_bytes(self.raw[:3], "big")
            if len(self.raw) < 9 + length:
                break
            kind, flags = self.raw[3], self.raw[4]
            payload = bytes(self.raw[9:9 + length])
            del self.raw[:9 + length]
            if kind == 0x7:
                self.goaway_code = int.from_bytes(payload[4:8], "big")
            elif kind == 0x6 and not flags & 0x1:
                self.sock.sendall(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)

    def stream(self, sid: int) -> Stream:
        return self.streams.setdefault(sid, Stream())

    def wait(self, cond, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while not cond():
            if self.eof or self.goaway is not None or self.raw is not None:
                if cond():
                    return
                raise Closed(f"connection ended (goaway={self.goaway})")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("condition not met in time")
            self.pump(min(left, 0.5))

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self.flush()
        except Exception:
            pass
        self.sock.close()

    # --- plain requests -------------------------------------------------
    def request(self, path: str, method: str = "GET",
                headers: list[tuple[str, str]] | None = None) -> tuple[int, dict, bytes]:
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":authority", self.authority),
                (":path", path)] + list(headers or [])
        self.conn.send_headers(sid, hdrs, end_stream=True)
        self.flush()
        s = self.stream(sid)
        self.wait(lambda: s.ended or s.reset is not None)
        assert s.headers is not None, f"stream {sid} reset ({s.reset}) before a response"
        return int(s.headers[":status"]), s.headers, bytes(s.data)

    # --- WebSockets over HTTP/2 (RFC 8441) ------------------------------
    def connect_ws(self, path: str, headers: list[tuple[str, str]] | None = None,
                   protocol: str | None = "websocket") -> tuple[int, int, dict]:
        """Sends an extended CONNECT; returns (stream id, status, headers)."""
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", "CONNECT")]
        if protocol is not None:
            hdrs.append((":protocol", protocol))
        hdrs += [(":scheme", "https"), (":authority", self.authority), (":path", path),
                 ("sec-websocket-version", "13")]
        hdrs += list(headers or [])
        self.conn.send_headers(sid, hdrs, end_stream=False)
        self.flush()
        s = self.stream(sid)
        self.wait(lambda: s.headers is not None or s.reset is not None)
        assert s.headers is not None, f"stream {sid} reset ({s.reset})"
        return sid, int(s.headers[":status"]), s.headers

    def send_ws(self, sid: int, opcode: int, payload: bytes) -> None:
        frame = encode_frame(opcode, payload)
        self.send_data(sid, frame)

    def send_data(self, sid: int, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            if time.monotonic() > deadline:
                raise TimeoutError(f"stream {sid}: no send window for {self.timeout}s")
            window = min(self.conn.local_flow_control_window(sid),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump(0.2)
                if self.eof:
                    raise Closed("connection ended while sending")
                continue
            n = min(window, len(view))
            self.conn.send_data(sid, bytes(view[:n]))
            view = view[n:]
            self.flush()

    def recv_ws(self, sid: int, timeout: float | None = None) -> tuple[int, bytes]:
        """The next whole frame the server sent on `sid` (opcode, payload)."""
        s = self.stream(sid)
        out: list = []

        def ready() -> bool:
            got = decode_frame(s.data)
            if got is None:
                return s.ended or s.reset is not None
            opcode, payload, used = got
            del s.data[:used]
            out.append((opcode, payload))
            return True

        self.wait(ready, timeout)
        if not out:
            raise Closed(f"stream {sid} ended (reset={s.reset}) with no frame")
        return out[0]


def encode_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += struct.pack("!H", n)
    else:
        head.append(0x80 | 127)
        head += struct.pack("!Q", n)
    mask = os.urandom(4)
    head += mask
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask(payload, mask)
    return bytes(head) + body


def _mask(payload: bytes, mask: bytes) -> bytes:
    reps = (len(payload) + 3) // 4
    key = int.from_bytes((mask * reps)[: len(payload)], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(len(payload), "big")


def decode_frame(buf: bytearray):
    """(opcode, payload, bytes used) of the first whole (unmasked) frame."""
    if len(buf) < 2:
        return None
    opcode = buf[0] & 0x0F
    n = buf[1] & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack("!H", buf[2:4])[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack("!Q", buf[2:10])[0]
        pos = 10
    if len(buf) < pos + n:
        return None
    return opcode, bytes(buf[pos:pos + n]), pos + n


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
