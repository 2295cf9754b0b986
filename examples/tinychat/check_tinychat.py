"""TinyChat's protocol through wssd, and a certbot renewal under an open
socket; wssd is started by test.sh.

    check_tinychat.py chat    --port P --admin-port A --ca CA --password PW
    check_tinychat.py renewal --port P --admin-port A --ca CA --root LE --name NAME

`chat`: TinyChat clients' own messages (a `join` with a username and no room,
`message`, moderator `auth` with the MOD_PASSWORD, `kick`).
`renewal`: a client stays in the room; the live/ symlinks are swapped to a
new pair as `certbot renew` does; once wssd counts the reload
(`wssd_certificate_reloads_total{result="ok"}`), a new TLS connection gets
the new certificate (serial) and the old socket still chats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from websockets.asyncio.client import connect

TIMEOUT = 5.0
HERE = Path(__file__).resolve().parent


class Client:
    """A TinyChat client: JSON text messages on one WebSocket."""

    def __init__(self, ws, name: str):
        self.ws, self.name = ws, name

    @classmethod
    async def open(cls, args, name: str) -> "Client":
        ws = await connect(f"wss://localhost:{args.port}/ws/chat", ssl=context(args),
                           open_timeout=TIMEOUT)
        return cls(ws, name)

    async def send(self, **message):
        await self.ws.send(json.dumps(message))

    async def expect(self, kind: str, **fields) -> dict:
        """The next message of type KIND (others in between are skipped)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {kind} {fields} within {TIMEOUT} s")
            event = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            if event.get("type") == kind and all(event.get(k) == v for k, v in fields.items()):
                return event
            assert event.get("type") != "error" or kind == "error", f"{self.name}: {event}"

    async def join(self) -> dict:
        # TinyChat's client joins with a username only: no room.
        await self.send(type="join", username=self.name)
        return await self.expect("joined", username=self.name)


def context(args) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=args.ca)


def reloads_ok(args) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{args.admin_port}/metrics", timeout=TIMEOUT) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("wssd_certificate_reloads_total{") and 'result="ok"' in line)


async def served_serial(args) -> str:
    """The serial of the certificate a new TLS connection gets."""
    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", args.port, ssl=context(args), server_hostname="localhost"),
        TIMEOUT)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


async def chat(args):
    alice, bob = await Client.open(args, "alice"), await Client.open(args, "bob")
    joined = await alice.join()
    assert joined["room"] == "lobby" and joined["members"] == ["alice"], joined
    joined = await bob.join()
    assert joined["room"] == "lobby" and sorted(joined["members"]) == ["alice", "bob"], joined
    await alice.expect("presence", event="join", username="bob")
    await alice.send(type="message", text="hello from TinyChat")
    for c in (alice, bob):
        m = await c.expect("message", **{"from": "alice"})
        assert m["text"] == "hello from TinyChat" and m["room"] == "lobby", m
    # Moderation with TinyChat's MOD_PASSWORD (now WSSD_MOD_PASSWORD).
    await bob.send(type="kick", username="alice")
    await bob.expect("error", code="not_moderator")
    await alice.send(type="auth", password=args.password)
    await alice.expect("authenticated", moderator=True)
    await bob.send(type="auth", password="not-" + args.password)
    await bob.expect("error", code="bad_password")
    await alice.send(type="kick", username="bob")
    await alice.expect("moderation", action="kick", username="bob")
    await bob.expect("moderation", action="kick", username="bob")
    try:
        await asyncio.wait_for(bob.ws.recv(), TIMEOUT)
        raise AssertionError("bob was not closed after the kick")
    except Exception as e:  # websockets' ConnectionClosed
        code = getattr(getattr(e, "rcvd", None), "code", None)
        assert code == 4001, f"kick closed with {code}: {e!r}"
    await alice.ws.close()
    print("ok: TinyChat join without a room lands in lobby; messages, moderator auth and kick work")


async def renewal(args):
    live = Path(args.root) / "live" / args.name
    old = subprocess.run([sys.executable, str(HERE / "certbot_like.py"), args.root, "serial",
                          str(live / "cert.pem")], capture_output=True, text=True, check=True).stdout.strip()
    assert await served_serial(args) == old
    carol = await Client.open(args, "carol")
    await carol.join()
    before = reloads_ok(args)
    new = subprocess.run([sys.executable, str(HERE / "certbot_like.py"), args.root, "issue", args.name, "2"],
                         capture_output=True, text=True, check=True).stdout.strip()
    started = time.monotonic()
    subprocess.run([sys.executable, str(HERE / "certbot_like.py"), args.root, "deploy", args.name, "2"],
                   check=True)
    # Readiness: wssd counts the reload (file events; its periodic check is the backstop).
    deadline = started + 40
    while reloads_ok(args) <= before:
        assert time.monotonic() < deadline, "wssd did not reload the renewed certificate"
        await asyncio.sleep(0.05)
    took = time.monotonic() - started
    assert await served_serial(args) == new, "a new connection still gets the old certificate"
    # The socket opened before the renewal still chats.
    await carol.send(type="message", text="still here after renew")
    m = await carol.expect("message", **{"from": "carol"})
    assert m["text"] == "still here after renew", m
    dave = await Client.open(args, "dave")
    joined = await dave.join()
    assert sorted(joined["members"]) == ["carol", "dave"], joined
    await carol.expect("presence", event="join", username="dave")
    await carol.ws.close()
    await dave.ws.close()
    print(f"ok: certbot-style renewal (serial {old} -> {new}) picked up {took:.2f} s after the symlink "
          f"swap, no restart; the socket opened before it still chats")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["chat", "renewal"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin-port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--password")
    p.add_argument("--root")
    p.add_argument("--name")
    args = p.parse_args()
    asyncio.run(chat(args) if args.mode == "chat" else renewal(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
