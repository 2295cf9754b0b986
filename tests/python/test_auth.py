"""Route auth with a real browser-like client (Python websockets): the
token as the access_token query parameter (what a browser page can do),
as a cookie, and as Authorization: Bearer; refused handshakes get 401 with
WWW-Authenticate and never open."""

import json
import socket
from pathlib import Path

import pytest
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus

from conftest import run, ws_connect

TOKEN = "py-client-token-0123456789abcdef"


def start(wssd, tmp_path):
    (tmp_path / "tokens.txt").write_text(f"pyclient:{TOKEN}\n")
    config = tmp_path / "auth.toml"
    config.write_text(
        "[[route]]\npath = \"/ws/echo\"\nkind = \"echo\"\n"
        f"auth = {{ kind = \"token\", tokens_file = \"{tmp_path}/tokens.txt\", cookie = \"wssd_token\" }}\n"
    )
    return wssd.start("--config", str(config), listen=False, http=True)


async def echo(url, **kwargs):
    async with ws_connect(url, **kwargs) as ws:
        await ws.send("through the gate")
        return await ws.recv()


def test_token_in_query_cookie_or_header_opens_the_socket(wssd, tmp_path):
    srv = start(wssd, tmp_path)
    url = srv.ws_url("/ws/echo")
    assert run(echo(f"{url}?access_token={TOKEN}")) == "through the gate"
    assert run(echo(url, additional_headers={"Cookie": f"wssd_token={TOKEN}"})) == "through the gate"
    assert run(echo(url, additional_headers={"Authorization": f"Bearer {TOKEN}"})) == "through the gate"


@pytest.mark.parametrize("query,headers,challenge", [
    ("", {}, 'Bearer realm="wssd"'),
    ("?access_token=not-the-token-0000000000", {}, 'Bearer realm="wssd", error="invalid_token"'),
    ("", {"Authorization": "Bearer not-the-token-0000000000"}, 'Bearer realm="wssd", error="invalid_token"'),
])
def test_refused_handshakes_get_401_with_a_challenge(wssd, tmp_path, query, headers, challenge):
    srv = start(wssd, tmp_path)
    with pytest.raises(InvalidStatus) as refused:
        run(echo(srv.ws_url("/ws/echo") + query, additional_headers=headers))
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge
    assert TOKEN.encode() not in response.body


ENV_SH = Path(__file__).resolve().parents[1] / "fixtures" / "exec" / "env.sh"


def test_token_identity_reaches_exec_and_proxy(wssd, tmp_path):
    """The token's name is the identity: exec programs get REMOTE_USER and
    AUTH_TYPE=Bearer, proxy upstreams X-Wssd-Identity (the client's own
    copy removed)."""
    (tmp_path / "tokens.txt").write_text(f"pyclient:{TOKEN}\n")
    auth = f'auth = {{ kind = "token", tokens_file = "{tmp_path}/tokens.txt" }}\n'
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    port = upstream.getsockname()[1]
    config = tmp_path / "identity.toml"
    config.write_text(
        f'[[route]]\npath = "/env"\nkind = "exec"\ncommand = ["{ENV_SH}"]\n{auth}\n'
        f'[[route]]\npath = "/up"\nkind = "proxy"\nupstream = "ws://127.0.0.1:{port}"\n{auth}'
    )
    srv = wssd.start("--config", str(config), listen=False, http=True)
    forged = {"X-Wssd-Identity": "root", "Remote-User": "root"}

    async def upstream_handler(ws):
        await ws.send(json.dumps([[k.lower(), v] for k, v in ws.request.headers.raw_items()
                                  if k.lower().startswith("x-wssd-identity")]))
        await ws.wait_closed()

    async def main():
        async with ws_connect(f"{srv.ws_url('/env')}?access_token={TOKEN}",
                              additional_headers=forged) as ws:
            env = dict(line.split("=", 1) for line in [m async for m in ws] if "=" in line)
        assert env.get("REMOTE_USER") == "pyclient", env
        assert env.get("AUTH_TYPE") == "Bearer", env
        assert env.get("HTTP_REMOTE_USER") == "root", "a client's header is only HTTP_*"
        async with serve(upstream_handler, sock=upstream):
            async with ws_connect(f"{srv.ws_url('/up')}?access_token={TOKEN}",
                                  additional_headers=forged) as ws:
                seen = json.loads(await ws.recv())
        assert seen == [["x-wssd-identity", "pyclient"], ["x-wssd-identity-source", "token"]], seen

    run(main())
