"""The chat route kind end to end (docs/chat.md): rooms, presence, history,
errors, rate limits, moderators, and HTTP publishing into a room.

Every server runs the real binary with `--route /ws/chat=chat --route
/ws/news=broadcast`, a publish token and (unless a test says otherwise) a
moderator password in WSSD_MOD_PASSWORD; route settings that have no flag
(history, max_text, rate, burst, moderator_password_env) come from a TOML
`--config` file. Clients talk wss:// with the server's certificate verified,
and ws:// where a test says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from conftest import Wssd, http_request, run, wssd_bin, ws_connect

TOKEN = "chat-test-publish-token-0123456789"
MOD_PASSWORD = "correct horse battery staple"
ROUTES = ["--route", "/ws/chat=chat", "--route", "/ws/news=broadcast"]
WAIT = 5.0  # longest wait for any one expected event


# -- servers -------------------------------------------------------------------

def start_chat(wssd, *extra: str, password: str | None = MOD_PASSWORD, http: bool = False,
               env: dict[str, str] | None = None):
    """The chat server of these tests: routes by flag, publish token, and the
    moderator password in WSSD_MOD_PASSWORD (none when PASSWORD is None)."""
    child_env = dict(env or {})
    if password is not None:
        child_env["WSSD_MOD_PASSWORD"] = password
    return wssd.start(*ROUTES, "--publish-token", TOKEN, *extra, http=http, env=child_env)


def start_with_chat_settings(wssd, settings: str, *, password: str | None = MOD_PASSWORD,
                             env: dict[str, str] | None = None, http: bool = False):
    """A server whose /ws/chat route carries SETTINGS (TOML lines), from a --config file."""
    config = Path(wssd.workdir) / "chat-test.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'publish_token = "{TOKEN}"\n\n'
        '[[route]]\npath = "/ws/chat"\nkind = "chat"\n' + settings.strip() + "\n\n"
        '[[route]]\npath = "/ws/news"\nkind = "broadcast"\n'
    )
    child_env = dict(env or {})
    if password is not None:
        child_env["WSSD_MOD_PASSWORD"] = password
    return wssd.start("--config", str(config), http=http, env=child_env)


# -- a chat client -------------------------------------------------------------

class Client:
    """One chat connection with helpers that assert what arrives."""

    def __init__(self, ws, label: str):
        self.ws = ws
        self.label = label
        self.name: str | None = None
        self.room: str | None = None

    async def send(self, request) -> None:
        await self.ws.send(request if isinstance(request, (str, bytes)) else json.dumps(request))

    async def recv(self, timeout: float = WAIT) -> dict:
        try:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.label}: nothing arrived within {timeout}s") from None
        assert isinstance(raw, str), f"{self.label}: server sent a binary message {raw[:60]!r}"
        event = json.loads(raw)
        assert isinstance(event, dict) and isinstance(event.get("type"), str), \
            f"{self.label}: not an event object: {raw!r}"
        return event

    async def expect(self, type_: str, timeout: float = WAIT, **fields) -> dict:
        """The next event must be TYPE with FIELDS (use from_= for "from")."""
        event = await self.recv(timeout)
        if "from_" in fields:
            fields["from"] = fields.pop("from_")
        want = {"type": type_, **fields}
        got = {k: event.get(k) for k in want}
        assert got == want, f"{self.label}: expected {want}, got {event}"
        return event

    async def error(self, code: str) -> dict:
        event = await self.expect("error", code=code)
        assert isinstance(event.get("message"), str) and event["message"], \
            f"{self.label}: error without a message: {event}"
        return event

    async def join(self, room: str, name: str) -> dict:
        await self.send({"type": "join", "room": room, "username": name})
        event = await self.expect("joined", room=room, username=name)
        assert name in event["members"], f"{self.label}: joined without itself in members: {event}"
        assert isinstance(event["history"], list)
        self.name, self.room = name, room
        return event

    async def say(self, text: str) -> dict:
        """Sends a message; the sender's own copy (with id and ts) comes back."""
        await self.send({"type": "message", "text": text})
        return await self.expect("message", room=self.room, from_=self.name, text=text)

    async def closed(self, timeout: float = WAIT):
        """Waits for the server to close; returns the close frame it sent,
        failing on any other message in between."""
        try:
            event = await self.recv(timeout)
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, \
                f"{self.label}: connection dropped without a close frame: {exc!r}"
            return exc.rcvd
        raise AssertionError(f"{self.label}: expected a close, got {event}")

    async def close(self) -> None:
        await self.ws.close()


async def client(srv, label: str, plain: bool = False, **kwargs) -> Client:
    if plain:
        ws = await ws_connect(srv.ws_url("/ws/chat"), **kwargs)
    else:
        ws = await ws_connect(srv.wss_url("/ws/chat"), ssl=srv.ssl_context(), **kwargs)
    return Client(ws, label)


async def joined(srv, room: str, *names: str) -> list[Client]:
    """Connects and joins NAMES in order, consuming the presence events the
    earlier ones get about the later ones."""
    clients: list[Client] = []
    for name in names:
        c = await client(srv, name)
        await c.join(room, name)
        for other in clients:
            await other.expect("presence", room=room, event="join", username=name)
        clients.append(c)
    return clients


async def close_all(*clients: Client) -> None:
    for c in clients:
        await c.close()


def publish(srv, path: str, body: bytes, token: str | None = TOKEN, **headers):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http_request("POST", f"http://127.0.0.1:{srv.admin_port}/publish{path}", body, headers)


def now_ms() -> int:
    return int(time.time() * 1000)


# -- join, leave, presence -----------------------------------------------------

def test_join_presence_members_and_leave(wssd):
    srv = start_chat(wssd)

    async def main():
        alice = await client(srv, "alice")
        ev = await alice.join("lobby", "alice")
        assert ev["members"] == ["alice"] and ev["history"] == [], ev

        bob = await client(srv, "bob")
        ev = await bob.join("lobby", "bob")
        assert sorted(ev["members"]) == ["alice", "bob"], ev
        await alice.expect("presence", room="lobby", event="join", username="bob")

        carol = await client(srv, "carol")
        ev = await carol.join("lobby", "carol")
        assert sorted(ev["members"]) == ["alice", "bob", "carol"], ev
        await alice.expect("presence", room="lobby", event="join", username="carol")
        await bob.expect("presence", room="lobby", event="join", username="carol")
        # the joiner gets no presence event about itself: its next event is its own message
        await carol.say("hi all")
        await alice.expect("message", from_="carol", text="hi all")
        await bob.expect("message", from_="carol", text="hi all")

        # a room elsewhere is separate: no presence crosses rooms
        dave = await client(srv, "dave")
        ev = await dave.join("kitchen", "dave")
        assert ev["members"] == ["dave"], ev

        # leave: `left` to the leaver, presence leave to the others
        await bob.send({"type": "leave"})
        await bob.expect("left", room="lobby")
        await alice.expect("presence", room="lobby", event="leave", username="bob")
        await carol.expect("presence", room="lobby", event="leave", username="bob")
        # bob is no longer delivered lobby messages, and can join another room
        await alice.say("bob gone?")
        await carol.expect("message", from_="alice", text="bob gone?")
        ev = await bob.join("kitchen", "bob")
        assert sorted(ev["members"]) == ["bob", "dave"], ev
        await dave.expect("presence", room="kitchen", event="join", username="bob")
        # the first thing bob sees is his own message: nothing of the lobby leaked in
        await bob.say("moved")
        await dave.expect("message", room="kitchen", from_="bob", text="moved")
        # and lobby members got nothing from the kitchen
        await carol.say("still here")
        await alice.expect("message", room="lobby", from_="carol", text="still here")
        await close_all(alice, bob, carol, dave)

    run(main())


def test_leave_when_client_closes_or_drops_tcp(wssd):
    srv = start_chat(wssd, http=True)

    async def main():
        alice, bob = await joined(srv, "lobby", "alice", "bob")
        # a clean WebSocket close
        await bob.close()
        await alice.expect("presence", room="lobby", event="leave", username="bob")

        # carol over ws://, then the TCP connection is dropped (no close frame)
        carol = await client(srv, "carol", plain=True)
        await carol.join("lobby", "carol")
        await alice.expect("presence", room="lobby", event="join", username="carol")
        carol.ws.transport.abort()
        await alice.expect("presence", room="lobby", event="leave", username="carol")

        # both names are free again
        bob2 = await client(srv, "bob again")
        ev = await bob2.join("lobby", "bob")
        assert sorted(ev["members"]) == ["alice", "bob"], ev
        await alice.expect("presence", room="lobby", event="join", username="bob")
        carol2 = await client(srv, "carol again")
        ev = await carol2.join("lobby", "carol")
        assert sorted(ev["members"]) == ["alice", "bob", "carol"], ev
        await close_all(alice, bob2, carol2)

    run(main())


# -- history, ids, timestamps --------------------------------------------------

def test_history_on_join_oldest_first_with_same_ids(wssd):
    srv = start_chat(wssd)

    async def main():
        alice, bob = await joined(srv, "lobby", "alice", "bob")
        before = now_ms()
        sent = []
        for i, who in enumerate([alice, bob, alice]):
            mine = await who.say(f"message {i}")
            other = bob if who is alice else alice
            theirs = await other.expect("message", text=f"message {i}")
            assert theirs == mine, "members see the same event as the sender"
            sent.append(mine)
        after = now_ms()

        ids = [m["id"] for m in sent]
        assert all(isinstance(i, str) and i for i in ids), ids
        assert len(set(ids)) == 3, f"message ids are not unique: {ids}"
        for m in sent:
            assert isinstance(m["ts"], int), m
            assert before - 5000 <= m["ts"] <= after + 5000, \
                f"ts {m['ts']} is not within a few seconds of now ({before}..{after})"
        assert [m["ts"] for m in sent] == sorted(m["ts"] for m in sent), "ts went backwards"

        carol = await client(srv, "carol")
        ev = await carol.join("lobby", "carol")
        assert ev["history"] == sent, f"history on join: {ev['history']} != {sent}"
        await close_all(alice, bob, carol)

    run(main())


def test_history_capped_by_route_setting(wssd):
    srv = start_with_chat_settings(wssd, "history = 5")

    async def main():
        (alice,) = await joined(srv, "lobby", "alice")
        sent = [await alice.say(f"m{i}") for i in range(8)]
        assert len({m["id"] for m in sent}) == 8, "ids must be unique"
        bob = await client(srv, "bob")
        ev = await bob.join("lobby", "bob")
        assert [m["text"] for m in ev["history"]] == ["m3", "m4", "m5", "m6", "m7"], ev["history"]
        assert ev["history"] == sent[3:]
        await close_all(alice, bob)

    run(main())


# -- refusals that keep the connection open ------------------------------------

def test_name_taken_then_another_name(wssd):
    srv = start_chat(wssd)

    async def main():
        (alice,) = await joined(srv, "lobby", "alice")
        other = await client(srv, "second alice")
        await other.send({"type": "join", "room": "lobby", "username": "alice"})
        ev = await other.error("name_taken")
        assert "alice" in ev["message"], ev
        # still open, and not in the room: another name works
        ev = await other.join("lobby", "alice2")
        assert sorted(ev["members"]) == ["alice", "alice2"], ev
        await alice.expect("presence", room="lobby", event="join", username="alice2")
        # names are unique per room: alice in another room is fine
        third = await client(srv, "alice elsewhere")
        ev = await third.join("attic", "alice")
        assert ev["members"] == ["alice"], ev
        await close_all(alice, other, third)

    run(main())


BAD_ROOMS = ["", "has space", "x" * 65, "caf\u00e9", "slash/room", 'quote"']
BAD_NAMES = ["", " alice", "alice ", "a\nb", "tab\there", "x" * 33, "\u0007bell"]


def test_join_without_room_goes_to_the_default_room(wssd, tmp_path):
    """TinyChat's client joins with a username only: the route's
    default_room (`lobby` unless set) takes it, and a bad default_room is a
    configuration error naming the key."""
    srv = start_chat(wssd)

    async def scenario(srv, room):
        a = await client(srv, "a")
        await a.send({"type": "join", "username": "tiny"})
        event = await a.expect("joined", room=room, username="tiny")
        assert event["members"] == ["tiny"], event
        b, = await joined(srv, room, "other")
        await a.expect("presence", room=room, event="join", username="other")
        await close_all(a, b)

    run(scenario(srv, "lobby"))
    srv.stop()
    other = Wssd(tmp_path / "general")
    try:
        run(scenario(start_with_chat_settings(other, 'default_room = "general"'), "general"))
    finally:
        other.stop()
    bad = tmp_path / "bad-room.toml"
    bad.write_text('[[route]]\npath = "/c"\nkind = "chat"\ndefault_room = "no spaces"\n')
    out = subprocess.run([str(wssd_bin()), "check", "--config", str(bad)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0, out
    said = out.stdout + out.stderr
    assert "default_room" in said and "no spaces" in said, said


def test_invalid_room_and_invalid_name(wssd):
    srv = start_chat(wssd)

    async def main():
        # one connection per case: each refusal leaves it open and able to join
        for i, room in enumerate(BAD_ROOMS):
            c = await client(srv, f"room {room!r}")
            await c.send({"type": "join", "room": room, "username": "alice"})
            await c.error("invalid_room")
            await c.join(f"ok-room-{i}", "alice")
            await c.close()
        for i, name in enumerate(BAD_NAMES):
            c = await client(srv, f"name {name!r}")
            await c.send({"type": "join", "room": "lobby", "username": name})
            await c.error("bad_name")
            await c.join(f"names-{i}", "fine name")
            await c.close()
        # the limits themselves are allowed
        c = await client(srv, "edges")
        ev = await c.join("x" * 64, "y" * 32)
        assert ev["members"] == ["y" * 32]
        await c.send({"type": "leave"})
        await c.expect("left", room="x" * 64)
        await c.join("Az09_-.", "Zo\u00eb 2")
        await c.close()

    run(main())


def test_already_joined_and_not_joined(wssd):
    srv = start_chat(wssd)

    async def main():
        c = await client(srv, "c")
        await c.send({"type": "message", "text": "too early"})
        await c.error("not_joined")
        await c.send({"type": "leave"})
        await c.error("not_joined")
        await c.join("lobby", "alice")
        await c.send({"type": "join", "room": "lobby", "username": "alice"})
        await c.error("already_joined")
        await c.send({"type": "join", "room": "other", "username": "bob"})
        await c.error("already_joined")
        await c.say("still in the lobby")
        await c.send({"type": "leave"})
        await c.expect("left", room="lobby")
        await c.send({"type": "message", "text": "after leave"})
        await c.error("not_joined")
        await c.join("other", "bob")
        await c.close()

    run(main())


def test_malformed_requests_get_errors_and_the_connection_stays_open(wssd):
    srv = start_chat(wssd, http=True)

    async def main():
        c = await client(srv, "wss")
        for raw, code in [
            ("not json at all", "bad_json"),
            ('{"type": "join", ', "bad_json"),
            ("[1, 2, 3]", "bad_json"),
            ('"just a string"', "bad_json"),
            ("42", "bad_json"),
            ("{}", "bad_request"),
            ('{"type": 7}', "bad_request"),
            ('{"type": "dance"}', "unknown_type"),
        ]:
            await c.send(raw)
            ev = await c.error(code)
            assert ev["type"] == "error", (raw, ev)
        await c.send(b"\x00\x01binary\xff")
        await c.error("bad_request")
        await c.join("lobby", "alice")  # still open, and useful
        await c.close()

        p = await client(srv, "ws", plain=True)
        for request, code in [
            ({"type": "join"}, "bad_request"),
            ({"type": "join", "room": "lobby"}, "bad_request"),
            ({"type": "join", "room": 5, "username": "bob"}, "bad_request"),
            ({"type": "join", "room": "lobby", "username": ["bob"]}, "bad_request"),
        ]:
            await p.send(request)
            await p.error(code)
        await p.join("lobby", "bob")
        await p.send({"type": "message"})
        await p.error("bad_request")
        await p.send({"type": "message", "text": 12})
        await p.error("bad_request")
        await p.say("all good")
        await p.close()

    run(main())


def test_text_longer_than_max_text_is_too_long(wssd):
    srv = start_with_chat_settings(wssd, "max_text = 100")

    async def main():
        alice, bob = await joined(srv, "lobby", "alice", "bob")
        # max_text counts characters, not bytes: 100 two-byte characters pass
        await alice.say("\u00e9" * 100)
        await bob.expect("message", from_="alice", text="\u00e9" * 100)
        await alice.send({"type": "message", "text": "a" * 101})
        await alice.error("too_long")
        # still open; bob never got the long one: his next event is the next message
        await alice.say("short again")
        await bob.expect("message", from_="alice", text="short again")
        await close_all(alice, bob)

    run(main())


def test_rate_limit_error_then_close_1008(wssd):
    srv = start_with_chat_settings(wssd, "rate = 2\nburst = 4")

    async def main():
        alice, bob = await joined(srv, "lobby", "alice", "bob")
        # the burst is 4 messages and the join counts as one (every message
        # counts, whatever its type): 3 chat messages pass, the 4th is refused
        for i in range(3):
            await alice.say(f"burst {i}")
        await alice.send({"type": "message", "text": "one too many"})
        await alice.error("rate_limited")
        # tokens come back at `rate` per second: waiting is the behaviour here
        await asyncio.sleep(0.7)
        await alice.say("after a pause")
        seen = [(await bob.expect("message", from_="alice"))["text"] for _ in range(4)]
        assert seen == ["burst 0", "burst 1", "burst 2", "after a pause"], seen

        # keep going after the error: the third message over the limit in a
        # row closes with 1008 (two rate_limited errors, then the close)
        in_a_row = 0
        frame = None
        for i in range(20):
            try:
                await alice.send({"type": "message", "text": f"flood {i}"})
                ev = await alice.recv()
            except ConnectionClosed as exc:
                frame = exc.rcvd
                break
            if ev.get("type") == "error":
                assert ev["code"] == "rate_limited", ev
                in_a_row += 1
            else:  # within the rate after all: the count starts again
                assert ev.get("type") == "message", ev
                in_a_row = 0
        assert frame is not None, "the server never closed a connection that kept flooding"
        assert frame.code == 1008, f"expected close 1008, got {frame}"
        assert in_a_row == 2, f"closed after {in_a_row} rate_limited errors in a row, not 2"
        # the others are unaffected; they see alice leave (after any flood
        # message that was within the rate)
        while True:
            ev = await bob.recv()
            if ev.get("type") == "presence":
                assert ev == {"type": "presence", "room": "lobby", "event": "leave",
                              "username": "alice"}, ev
                break
            assert ev.get("type") == "message" and ev.get("from") == "alice", ev
        await close_all(bob)

    run(main())


# -- moderators ------------------------------------------------------------------

def test_moderator_password_attempts(wssd):
    srv = start_chat(wssd)

    async def main():
        c = await client(srv, "mod")
        await c.send({"type": "auth", "password": "wrong"})
        await c.error("bad_password")
        # a second attempt within one second is refused, even with the right password
        await c.send({"type": "auth", "password": MOD_PASSWORD})
        await c.error("rate_limited")
        await asyncio.sleep(1.1)  # the attempt rate is the behaviour
        await c.send({"type": "auth", "password": MOD_PASSWORD})
        await c.expect("authenticated", moderator=True)
        await c.close()

        # five wrong passwords, one per second: the fifth closes with 1008
        d = await client(srv, "guesser")
        for attempt in range(1, 5):
            await d.send({"type": "auth", "password": f"guess {attempt}"})
            await d.error("bad_password")
            await asyncio.sleep(1.05)
        await d.send({"type": "auth", "password": "guess 5"})
        frame = await d.closed()
        assert frame.code == 1008, f"fifth wrong password: expected close 1008, got {frame}"

    run(main(), timeout=30)


def test_moderator_actions_need_auth(wssd):
    srv = start_chat(wssd)

    async def main():
        alice, bob = await joined(srv, "lobby", "alice", "bob")
        for action in ("kick", "mute", "ban"):
            await alice.send({"type": action, "username": "bob"})
            await alice.error("not_moderator")
        # nothing happened to bob
        await bob.say("still here")
        await alice.expect("message", from_="bob", text="still here")
        # an authenticated moderator outside a room gets not_joined
        mod = await client(srv, "mod")
        await mod.send({"type": "auth", "password": MOD_PASSWORD})
        await mod.expect("authenticated", moderator=True)
        await mod.send({"type": "kick", "username": "bob"})
        await mod.error("not_joined")
        await close_all(alice, bob, mod)

    run(main())


async def moderator_and_members(srv, room: str, *names: str) -> list[Client]:
    """A moderator (auth before join) named "mod", then NAMES, all in ROOM."""
    mod = await client(srv, "mod")
    await mod.send({"type": "auth", "password": MOD_PASSWORD})
    await mod.expect("authenticated", moderator=True)
    await mod.join(room, "mod")
    others = await joined(srv, room, *names)
    for o in others:
        await mod.expect("presence", room=room, event="join", username=o.name)
    return [mod, *others]


def test_kick(wssd):
    srv = start_chat(wssd)

    async def main():
        mod, bob, carol = await moderator_and_members(srv, "lobby", "bob", "carol")
        await mod.send({"type": "kick", "username": "nobody"})
        await mod.error("no_such_user")

        await mod.send({"type": "kick", "username": "bob"})
        moderation = {"room": "lobby", "action": "kick", "username": "bob", "by": "mod"}
        await bob.expect("moderation", **moderation)
        frame = await bob.closed()
        assert frame.code == 4001, f"kicked: expected close 4001, got {frame}"
        for c in (mod, carol):
            await c.expect("moderation", **moderation)
            await c.expect("presence", room="lobby", event="leave", username="bob")
        # a kick is not a ban: the name may come back
        bob2 = await client(srv, "bob again")
        await bob2.join("lobby", "bob")
        await close_all(mod, carol, bob2)

    run(main())


def test_mute_expires(wssd):
    srv = start_chat(wssd)

    async def main():
        mod, bob, carol = await moderator_and_members(srv, "lobby", "bob", "carol")
        await mod.send({"type": "mute", "username": "nobody", "secs": 2})
        await mod.error("no_such_user")

        await mod.send({"type": "mute", "username": "bob", "secs": 2})
        muted_at = time.monotonic()
        moderation = {"room": "lobby", "action": "mute", "username": "bob", "by": "mod", "secs": 2}
        for c in (bob, mod, carol):
            await c.expect("moderation", **moderation)
        await bob.send({"type": "message", "text": "can I talk?"})
        await bob.error("muted")
        # poll (about 4 per second, under the default rate) until the mute is over
        passed = None
        while time.monotonic() - muted_at < 4.0:
            await asyncio.sleep(0.25)
            await bob.send({"type": "message", "text": "talking again"})
            ev = await bob.recv()
            if ev["type"] == "message":
                assert ev["from"] == "bob" and ev["text"] == "talking again", ev
                passed = time.monotonic() - muted_at
                break
            assert ev["type"] == "error" and ev["code"] == "muted", ev
        assert passed is not None, "bob was still muted 4 s after a 2 s mute"
        assert passed >= 1.5, f"a 2 s mute ended after only {passed:.2f}s"
        # carol got nothing of the muted attempts: her next event is the one that passed
        await carol.expect("message", from_="bob", text="talking again")
        await mod.expect("message", from_="bob", text="talking again")
        await close_all(mod, bob, carol)

    run(main())


def test_ban(wssd):
    srv = start_chat(wssd)

    async def main():
        mod, bob, carol = await moderator_and_members(srv, "lobby", "bob", "carol")
        await mod.send({"type": "ban", "username": "bob"})
        moderation = {"room": "lobby", "action": "ban", "username": "bob", "by": "mod"}
        await bob.expect("moderation", **moderation)
        frame = await bob.closed()
        assert frame.code == 4003, f"banned: expected close 4003, got {frame}"
        for c in (mod, carol):
            await c.expect("moderation", **moderation)
            await c.expect("presence", room="lobby", event="leave", username="bob")
        again = await client(srv, "bob again")
        await again.send({"type": "join", "room": "lobby", "username": "bob"})
        await again.error("banned")
        await again.join("lobby", "bobby")
        await mod.expect("presence", room="lobby", event="join", username="bobby")
        # the ban is per room
        elsewhere = await client(srv, "bob elsewhere")
        await elsewhere.join("attic", "bob")
        await close_all(mod, carol, again, elsewhere)

    run(main())


def test_moderation_disabled_without_password(wssd):
    srv = start_chat(wssd, password=None)
    environ = Path(f"/proc/{srv.proc.pid}/environ")
    if environ.exists():
        names = {e.split(b"=", 1)[0] for e in environ.read_bytes().split(b"\0") if e}
        assert b"WSSD_MOD_PASSWORD" not in names, "the fixture leaked WSSD_MOD_PASSWORD"

    async def main():
        alice, bob = await joined(srv, "lobby", "alice", "bob")
        await alice.send({"type": "auth", "password": MOD_PASSWORD})
        ev = await alice.error("moderation_disabled")
        assert "WSSD_MOD_PASSWORD" in ev["message"], ev
        await alice.send({"type": "kick", "username": "bob"})
        await alice.error("not_moderator")
        await bob.say("unharmed")
        await close_all(alice, bob)

    run(main())


def test_moderator_password_env_named_in_toml(wssd):
    srv = start_with_chat_settings(wssd, 'moderator_password_env = "MY_CHAT_PW"',
                                   password="the default variable",
                                   env={"MY_CHAT_PW": "route specific pw"})

    async def main():
        mod = await client(srv, "mod")
        # WSSD_MOD_PASSWORD is not this route's password
        await mod.send({"type": "auth", "password": "the default variable"})
        await mod.error("bad_password")
        await asyncio.sleep(1.1)
        await mod.send({"type": "auth", "password": "route specific pw"})
        await mod.expect("authenticated", moderator=True)
        await mod.join("lobby", "mod")
        (bob,) = await joined(srv, "lobby", "bob")
        await mod.expect("presence", room="lobby", event="join", username="bob")
        await mod.send({"type": "kick", "username": "bob"})
        await bob.expect("moderation", action="kick", username="bob", by="mod")
        assert (await bob.closed()).code == 4001
        await mod.close()

    run(main())


# -- HTTP publish into a chat room ---------------------------------------------

def test_publish_into_chat_room(wssd):
    srv = start_chat(wssd)

    async def main():
        alice, bob = await joined(srv, "lobby", "alice", "bob")
        (dave,) = await joined(srv, "elsewhere", "dave")
        status, headers, body = await asyncio.to_thread(
            publish, srv, "/ws/chat?room=lobby&from=cron", "nightly build: ok \u2713".encode())
        assert status == 200, (status, body)
        assert json.loads(body) == {"delivered": 2}, body
        assert headers.get("Content-Type", "").startswith("application/json"), headers
        events = [await c.expect("message", room="lobby", from_="cron", text="nightly build: ok \u2713")
                  for c in (alice, bob)]
        assert events[0] == events[1]
        assert isinstance(events[0]["id"], str) and abs(events[0]["ts"] - now_ms()) < 5000

        # without `from` it comes from "server"
        status, _, body = await asyncio.to_thread(publish, srv, "/ws/chat?room=lobby", b"plain")
        assert status == 200 and json.loads(body) == {"delivered": 2}, (status, body)
        plain = await alice.expect("message", room="lobby", from_="server", text="plain")
        await bob.expect("message", from_="server", text="plain")
        assert plain["id"] != events[0]["id"]

        # both are history for a later joiner, in order
        carol = await client(srv, "carol")
        ev = await carol.join("lobby", "carol")
        assert ev["history"] == [events[0], plain], ev["history"]
        for c in (alice, bob):
            await c.expect("presence", room="lobby", event="join", username="carol")

        # refusals
        status, _, body = await asyncio.to_thread(publish, srv, "/ws/chat", b"no room")
        assert status == 400, (status, body)
        status, _, body = await asyncio.to_thread(publish, srv, "/ws/chat?room=bad%20room", b"x")
        assert status == 400, (status, body)
        status, _, body = await asyncio.to_thread(publish, srv, "/ws/chat?room=lobby", b"\xff\xfe")
        assert status == 400, (status, body)
        status, _, body = await asyncio.to_thread(publish, srv, "/ws/chat?room=lobby", b"x",
                                                  token="wrong-token-0123456789")
        assert status == 401, (status, body)
        # none of the refused ones reached anyone: the next lobby event is this one
        await bob.say("after the refusals")
        for c in (alice, carol):
            await c.expect("message", from_="bob", text="after the refusals")
        # dave, in another room, got nothing at all
        await dave.say("quiet here")
        await close_all(alice, bob, carol, dave)

    run(main())
