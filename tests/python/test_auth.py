"""Route auth with a real browser-like client (Python websockets): the
token as the access_token query parameter (what a browser page can do),
as a cookie, and as Authorization: Bearer; refused handshakes get 401 with
WWW-Authenticate and never open."""

import pytest
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
