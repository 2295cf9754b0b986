"""Chat and the connection's identity (issue 12; docs/chat.md, "Identity"):
`identity_username` makes the identity the username, `moderators` makes
listed identities moderators without the password; both keys are chat-only
and checked at load.

The identity here is the subject of a verified client certificate (mTLS,
`--client-ca` with `--client-auth optional`), which the edge passes to every
route without `auth`: certificates for CN=alice, CN=bob and CN=carol are
made by a throwaway CA (the `cryptography` package) for each test. The
JWT tests use a route `auth = { kind = "jwt" }` and HS256 tokens signed here
with the standard library (base64url + hmac), so the identity is the
token's `sub` and `moderator_claim` sees its claims.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import run, ws_connect, wssd_bin
from test_chat import Client

MOD_PASSWORD = "identity-test-moderator-password"
JWT_SECRET = "chat-identity-test-jwt-secret-0123456789abcdef"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_hs256(secret: str, **claims) -> str:
    """A compact HS256 JWT with CLAIMS (plus exp five minutes ahead)."""
    claims.setdefault("exp", int(time.time()) + 300)
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(mac)}"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(folder: Path, *users: str) -> dict[str, tuple[Path, Path]]:
    """A CA (folder/ca.pem) and a client certificate per user (CN=user);
    returns {user: (cert file, key file)}."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder()
          .subject_name(_name("chat identity test CA")).issuer_name(_name("chat identity test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files = {}
    for user in users:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(_name(user)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_file, key_file = folder / f"{user}.pem", folder / f"{user}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        files[user] = (cert_file, key_file)
    return files


ROUTES = """
[[route]]
path = "/ws/idchat"
kind = "chat"
identity_username = true
moderators = ["CN=alice"]

[[route]]
path = "/ws/chat"
kind = "chat"
moderators = ["CN=alice"]
"""


def start(wssd, password: str | None = None):
    """A server with the two chat routes above and optional client
    certificates; returns (server, {user: (cert, key)})."""
    pki = make_pki(Path(wssd.workdir) / "pki", "alice", "bob", "carol")
    config = Path(wssd.workdir) / "chat-identity.toml"
    config.write_text(ROUTES)
    env = {"WSSD_MOD_PASSWORD": password} if password else {}
    srv = wssd.start("--config", str(config), "--client-ca", str(Path(wssd.workdir) / "pki" / "ca.pem"),
                     "--client-auth", "optional", env=env)
    return srv, pki


async def connect(srv, pki, path: str, user: str | None) -> Client:
    """A chat client on PATH presenting USER's certificate (none for None)."""
    ctx = srv.ssl_context()
    if user is not None:
        cert, key = pki[user]
        ctx.load_cert_chain(str(cert), str(key))
    ws = await ws_connect(srv.wss_url(path), ssl=ctx)
    return Client(ws, user or "anonymous")


def test_identity_is_the_username_and_a_listed_identity_moderates(wssd):
    srv, pki = start(wssd)

    async def main():
        alice = await connect(srv, pki, "/ws/idchat", "alice")
        # The username in the join is ignored: the identity is the name.
        await alice.send({"type": "join", "room": "r", "username": "mallory"})
        event = await alice.expect("joined", room="r", username="CN=alice", moderator=True)
        assert event["members"] == ["CN=alice"], event
        bob = await connect(srv, pki, "/ws/idchat", "bob")
        await bob.send({"type": "join", "room": "r", "username": "CN=alice"})
        await bob.expect("joined", room="r", username="CN=bob", moderator=False)
        await alice.expect("presence", event="join", username="CN=bob")
        # Messages are from the identity.
        await bob.send({"type": "message", "text": "hi"})
        for c in (alice, bob):
            await c.expect("message", from_="CN=bob", text="hi")
        # Not listed: no moderator rights (and no password is configured).
        await bob.send({"type": "kick", "username": "CN=alice"})
        await bob.error("not_moderator")
        # Without an identity there is no name to take; the socket stays open.
        anon = await connect(srv, pki, "/ws/idchat", None)
        for _ in range(2):
            await anon.send({"type": "join", "room": "r", "username": "alice"})
            await anon.error("identity_required")
        # One identity, one place in a room.
        alice2 = await connect(srv, pki, "/ws/idchat", "alice")
        await alice2.send({"type": "join", "room": "r"})
        await alice2.error("name_taken")
        # The listed identity moderates without any password.
        await alice.send({"type": "kick", "username": "cn=bob"})
        await bob.expect("moderation", action="kick", username="CN=bob", by="CN=alice")
        frame = await bob.closed()
        assert frame.code == 4001, frame
        for c in (alice, anon, alice2, bob):
            await c.close()

    run(main())
    # The session's log lines carry the identity (the moderation line here).
    lines = [line for line in srv.log().splitlines() if "moderation" in line]
    assert any('identity="CN=alice"' in line and "auth=" in line for line in lines), srv.log_tail()


def test_moderators_by_identity_on_a_route_with_chosen_names(wssd):
    srv, pki = start(wssd, password=MOD_PASSWORD)

    async def main():
        alice = await connect(srv, pki, "/ws/chat", "alice")
        await alice.send({"type": "join", "room": "lobby", "username": "al"})
        await alice.expect("joined", room="lobby", username="al", moderator=True)
        carol = await connect(srv, pki, "/ws/chat", "carol")
        await carol.send({"type": "join", "room": "lobby", "username": "carol"})
        await carol.expect("joined", username="carol", moderator=False)
        await alice.expect("presence", event="join", username="carol")
        anon = await connect(srv, pki, "/ws/chat", None)
        # Names are free here, even the listed identity's: only its
        # certificate makes a moderator.
        await anon.send({"type": "join", "room": "lobby", "username": "CN=alice"})
        await anon.expect("joined", username="CN=alice", moderator=False)
        for c in (alice, carol):
            await c.expect("presence", event="join", username="CN=alice")
        for c in (carol, anon):
            await c.send({"type": "mute", "username": "al", "secs": 5})
            await c.error("not_moderator")
        await alice.send({"type": "mute", "username": "carol", "secs": 5})
        for c in (alice, carol, anon):
            await c.expect("moderation", action="mute", username="carol", by="al", secs=5)
        await carol.send({"type": "message", "text": "can I?"})
        await carol.error("muted")
        # The password still makes moderators beside the list.
        await anon.send({"type": "auth", "password": MOD_PASSWORD})
        await anon.expect("authenticated", moderator=True)
        for c in (alice, carol, anon):
            await c.close()

    run(main())


JWT_ROUTES = """
[[route]]
path = "/ws/jwtchat"
kind = "chat"
identity_username = true
moderator_claim = "role=moderator"
auth = { kind = "jwt", secret_env = "WSSD_TEST_JWT_SECRET" }

[[route]]
path = "/ws/jwtmod"
kind = "chat"
moderator_claim = "role=moderator"
auth = { kind = "jwt", secret_env = "WSSD_TEST_JWT_SECRET" }
"""


def start_jwt(wssd):
    """A server with the two JWT chat routes above and a moderator password."""
    config = Path(wssd.workdir) / "chat-jwt.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(JWT_ROUTES)
    return wssd.start("--config", str(config),
                      env={"WSSD_TEST_JWT_SECRET": JWT_SECRET, "WSSD_MOD_PASSWORD": MOD_PASSWORD})


async def connect_jwt(srv, path: str, token: str, label: str) -> Client:
    """A chat client on PATH with TOKEN as its access_token."""
    ws = await ws_connect(f"{srv.wss_url(path)}?access_token={token}", ssl=srv.ssl_context())
    return Client(ws, label)


def test_jwt_identity_is_the_username_and_its_claim_moderates(wssd):
    srv = start_jwt(wssd)
    mod = jwt_hs256(JWT_SECRET, sub="dana", role="moderator")
    plain = jwt_hs256(JWT_SECRET, sub="erin", role="member")

    async def main():
        dana = await connect_jwt(srv, "/ws/jwtchat", mod, "dana")
        await dana.send({"type": "join", "room": "r", "username": "mallory"})
        await dana.expect("joined", room="r", username="dana", moderator=True)
        erin = await connect_jwt(srv, "/ws/jwtchat", plain, "erin")
        await erin.send({"type": "join", "room": "r", "username": "dana"})
        await erin.expect("joined", room="r", username="erin", moderator=False)
        await dana.expect("presence", event="join", username="erin")
        await erin.send({"type": "message", "text": "from the token"})
        for c in (dana, erin):
            await c.expect("message", from_="erin", text="from the token")
        # Without the claim: no rights.
        await erin.send({"type": "mute", "username": "dana", "secs": 5})
        await erin.error("not_moderator")
        # With it: no password needed.
        await dana.send({"type": "kick", "username": "erin"})
        await erin.expect("moderation", action="kick", username="erin", by="dana")
        frame = await erin.closed()
        assert frame.code == 4001, frame
        await dana.close()

    run(main())
    assert any('identity="dana"' in line for line in srv.log().splitlines()), srv.log_tail()


def test_jwt_claim_moderates_beside_the_password_on_chosen_names(wssd):
    srv = start_jwt(wssd)
    mod = jwt_hs256(JWT_SECRET, sub="dana", role="moderator")
    plain = jwt_hs256(JWT_SECRET, sub="erin")

    async def main():
        dana = await connect_jwt(srv, "/ws/jwtmod", mod, "dana")
        await dana.send({"type": "join", "room": "lobby", "username": "d"})
        await dana.expect("joined", username="d", moderator=True)
        erin = await connect_jwt(srv, "/ws/jwtmod", plain, "erin")
        # The name is free here, even a moderator's identity: only the claim counts.
        await erin.send({"type": "join", "room": "lobby", "username": "dana"})
        await erin.expect("joined", username="dana", moderator=False)
        await dana.expect("presence", event="join", username="dana")
        await erin.send({"type": "kick", "username": "d"})
        await erin.error("not_moderator")
        await dana.send({"type": "mute", "username": "dana", "secs": 5})
        for c in (dana, erin):
            await c.expect("moderation", action="mute", username="dana", by="d", secs=5)
        # The password still works for a token without the claim.
        await erin.send({"type": "auth", "password": MOD_PASSWORD})
        await erin.expect("authenticated", moderator=True)
        for c in (dana, erin):
            await c.close()

    run(main())


def check(wssd, route: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    config = Path(wssd.workdir) / "check.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(route)
    return subprocess.run([str(wssd_bin()), "check", "--config", str(config),
                           "--state-dir", str(Path(wssd.workdir) / "state")],
                          cwd=wssd.workdir, capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_identity_keys_are_chat_only_and_checked(wssd):
    for key in ('identity_username = true', 'moderators = ["alice"]',
                'moderator_claim = "role=moderator"'):
        name = key.split(" ")[0]
        r = check(wssd, f'[[route]]\npath = "/e"\nkind = "echo"\n{key}\n')
        assert r.returncode == 1, r
        assert f"`{name}` applies to chat routes only" in r.stderr + r.stdout, r
    for bad, says in (('moderator_claim = "=moderator"', "claim name is empty"),
                      ('moderator_claim = "/a~2=x"', "JSON Pointer"),
                      ('moderators = ["alice", ""]', "non-empty")):
        r = check(wssd, f'[[route]]\npath = "/c"\nkind = "chat"\n{bad}\n')
        assert r.returncode == 1, r
        assert says in r.stderr + r.stdout, r
    r = check(wssd, '[[route]]\npath = "/c"\nkind = "chat"\nidentity_username = true\n'
                    'moderators = ["alice"]\nmoderator_claim = "/realm_access/roles=mod"\n')
    assert r.returncode == 0, r


def test_identity_keys_without_an_identity_are_warned(wssd):
    """Valid but inert: identity keys on a chat route that has neither
    `auth` nor client certificates, or `moderator_claim` where no JWT is."""
    chat = '[[route]]\npath = "/c"\nkind = "chat"\n'
    r = check(wssd, chat + 'identity_username = true\nmoderators = ["alice"]\n')
    assert r.returncode == 0, r
    assert "warning: route /c: `identity_username = true` but the route has no `auth`" in r.stdout, r
    assert "nobody can join" in r.stdout, r
    assert "warning: route /c: `moderators`/`moderator_claim` are set" in r.stdout, r
    tokens = Path(wssd.workdir) / "tokens.txt"
    tokens.write_text("bob:bob-token-0123456789abcdef\n")
    r = check(wssd, chat + f'moderator_claim = "role=mod"\n'
                           f'auth = {{ kind = "token", tokens_file = "{tokens}" }}\n')
    assert r.returncode == 0, r
    assert 'comes from its `auth` of kind "token", not a JWT' in r.stdout, r
    # Satisfiable: a JWT route, and no warning at all.
    r = check(wssd, JWT_ROUTES, env={"WSSD_TEST_JWT_SECRET": JWT_SECRET})
    assert r.returncode == 0, r
    assert "warning" not in r.stdout + r.stderr, r
    # `serve` logs the same warning at start.
    config = Path(wssd.workdir) / "inert.toml"
    config.write_text(chat + "identity_username = true\n")
    srv = wssd.start("--config", str(config))
    assert "`identity_username = true` but the route has no `auth`" in srv.log(), srv.log_tail()
