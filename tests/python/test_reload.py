"""Configuration reload on the real binary (issue 14 item 1, PRODUCT.md
"Reloads and restarts"): SIGHUP, a change to the configuration file and
`POST /reload` reload routes, listeners and allowlists; routes whose
definition did not change keep their WebSockets untouched, changed and
removed ones get 1001 after the grace (--drain-timeout); an invalid file
changes nothing and is counted.

- SIGHUP: 50 WebSockets echo continuously on an unchanged route across the
  reload (every reply checked, each one echoes after it), 50 on a changed
  and 10 on a removed route get 1001 after the grace ("route changed by
  reload", "route removed by reload"); the added route serves, the removed
  one 404s.
- Close reasons on every driver: echo (the session), exec and proxy
  WebSockets on changed routes say "route changed by reload", on a removed
  one "route removed by reload"; at SIGTERM the same drivers say "server
  shutting down".
- File change: an invalid file (two problems, both logged) changes nothing;
  the next valid change applies.
- POST /reload: no or a wrong token 401 (counted), GET 405, an invalid file
  422 with every problem, a valid one 200 with what changed, a setting that
  needs a restart `partial`.
- Listeners: added ones answer, removed ones refuse (their open WebSockets go
  on), an address that cannot be bound refuses the whole reload; an upgrade
  (SIGUSR2) after a listener change hands over the current listeners; with
  TLS a reload adds a TLS listener and reloads the certificates; listeners
  passed by the service manager stay as passed.

Readiness: a reload is awaited on its log line, its metric or its answer,
never by sleeping. Timings are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import free_port, http_get, http_request, metric_samples, run, ws_connect
from test_systemd import SOCKET_ACTIVATE, activate, first_connection
from test_upgrade import new_pid_from_log, successors  # noqa: F401 (a fixture)

TOKEN = "reload-token-0123456789"
GRACE = 1.0

ROUTES_A = """
[[route]]
path = "/keep"
kind = "echo"

[[route]]
path = "/change"
kind = "echo"

[[route]]
path = "/gone"
kind = "echo"
"""

# /keep identical, /change with another limit, /gone removed, /new added.
ROUTES_B = """
[[route]]
path = "/keep"
kind = "echo"

[[route]]
path = "/change"
kind = "echo"
max_message_size = 32768

[[route]]
path = "/new"
kind = "echo"
"""

# Two problems: both must be reported.
INVALID = """
[[route]]
path = "/keep"
kind = "nope"

[[route]]
path = "no-slash"
kind = "echo"
"""


def write_config(srv, text: str, extra: str = "") -> None:
    """Replace the configuration file the way editors do (write + rename)."""
    tmp = srv.workdir / ".wssd.toml.tmp"
    tmp.write_text(f"drain_timeout = {GRACE}\n{extra}\n{text}")
    tmp.replace(srv.workdir / "wssd.toml")


def start(wssd, *args: str, http: bool = True, routes: str = ROUTES_A, extra: str = ""):
    write_config(wssd, routes, extra)
    return wssd.start("--tls", "off", "--config", "wssd.toml", "--reload-token", TOKEN,
                      *args, listen=False, http=http)


def reloads(srv, result: str) -> float:
    return metric_samples(srv, "wssd_config_reloads_total").get(f'{{result="{result}"}}', 0.0)


def wait_until(what: str, check, timeout: float = 15.0, srv=None) -> float:
    """Poll CHECK until true; returns the time it took."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            tail = srv.log_tail() if srv else ""
            pytest.fail(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.02)
    return time.monotonic() - t0


def wait_for_log(srv, text: str, count: int = 1, timeout: float = 15.0) -> float:
    return wait_until(f"log line {text!r} x{count}", lambda: srv.log().count(text) >= count,
                      timeout, srv)


def post_reload(srv, token: str | None = TOKEN, method: str = "POST"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _, body = http_request(method, f"http://127.0.0.1:{srv.admin_port}/reload",
                                   body=b"" if method == "POST" else None, headers=headers,
                                   timeout=40)
    return status, body.decode()


async def ws_status(url: str) -> int:
    """101 when the upgrade succeeds, else the refusal's status."""
    try:
        async with ws_connect(url) as ws:
            await ws.send("ping")
            assert await ws.recv() == "ping"
            return 101
    except InvalidStatus as e:
        return e.response.status_code


async def pump(ws, stop: asyncio.Event, stats: dict, t_reload: list[float]):
    """Echo continuously; every reply must be the message sent."""
    n = 0
    while not stop.is_set():
        msg = f"m{n}"
        await ws.send(msg)
        got = await asyncio.wait_for(ws.recv(), 10)
        if got != msg:
            stats["wrong"] += 1
        n += 1
        stats["echoed"] += 1
        if t_reload and time.monotonic() > t_reload[0]:
            stats["after"] += 1
        await asyncio.sleep(0.01)


async def closed_at(ws) -> tuple[int | None, float, str | None]:
    """Wait for the server to close; (close code, when, close reason)."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
        reason = e.rcvd.reason if e.rcvd else None
        return code, time.monotonic(), reason


def test_sighup_keeps_unchanged_routes_and_closes_changed_and_removed_ones(wssd):
    srv = start(wssd, "--watch-config", "false")
    assert http_get(srv.http_url("/new"))[0] == 404
    timings = {}

    async def scenario():
        keep = [await ws_connect(srv.ws_url("/keep")) for _ in range(50)]
        change = [await ws_connect(srv.ws_url("/change")) for _ in range(50)]
        gone = [await ws_connect(srv.ws_url("/gone")) for _ in range(10)]
        stop = asyncio.Event()
        t_reload: list[float] = []
        stats = [{"echoed": 0, "wrong": 0, "after": 0} for _ in keep]
        pumps = [asyncio.create_task(pump(ws, stop, s, t_reload)) for ws, s in zip(keep, stats)]
        closes = [asyncio.create_task(closed_at(ws)) for ws in change + gone]
        await asyncio.sleep(0.3)  # the pumps are running before the reload
        write_config(srv, ROUTES_B)
        t0 = time.monotonic()
        srv.signal(signal.SIGHUP)
        await asyncio.to_thread(wait_for_log, srv, "configuration reloaded (SIGHUP")
        t_applied = time.monotonic()
        t_reload.append(t_applied)
        # Signal to the added route serving.
        while await ws_status(srv.ws_url("/new")) != 101:
            await asyncio.sleep(0.005)
        timings["signal_to_new_route_serving"] = time.monotonic() - t0
        done = await asyncio.wait_for(asyncio.gather(*closes), GRACE + 10)
        # The pumps go on after the last 1001.
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*pumps)
        for ws in keep:
            await ws.close()
        return t0, t_applied, done, stats

    t0, t_applied, done, stats = run(scenario(), timeout=60)
    codes = [code for code, _, _ in done]
    assert codes == [1001] * 60, codes
    reasons = [reason for _, _, reason in done]
    assert reasons == ["route changed by reload"] * 50 + ["route removed by reload"] * 10, reasons
    waits = [when - t_applied for _, when, _ in done]
    timings["reload_logged_to_1001_min"] = min(waits)
    timings["reload_logged_to_1001_max"] = max(waits)
    timings["signal_to_1001_max"] = max(when - t0 for _, when, _ in done)
    timings["reload_as_logged"] = srv.log().split("configuration reloaded (SIGHUP, ")[1].split(")")[0]
    # Not before the grace (less what the log poll may lag), bounded after it.
    assert min(waits) >= GRACE - 0.2, waits
    assert max(waits) <= GRACE + 3.0, waits
    assert all(s["wrong"] == 0 for s in stats)
    assert all(s["after"] > 0 for s in stats), "every unchanged socket echoed after the reload"
    timings["echoes_on_unchanged_route"] = sum(s["echoed"] for s in stats)
    # The removed route is gone, the changed one serves anew.
    assert http_get(srv.http_url("/gone"))[0] == 404
    assert run(ws_status(srv.ws_url("/change"))) == 101
    assert reloads(srv, "ok") == 1
    log = srv.log()
    assert "route added: /new" in log and "route changed: /change" in log
    assert "route removed: /gone" in log
    print(f"\nreload timings: {timings}")


def test_an_invalid_file_changes_nothing_and_the_next_change_is_applied(wssd):
    srv = start(wssd)  # the file is watched (default)

    async def scenario():
        async with ws_connect(srv.ws_url("/keep")) as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            t0 = time.monotonic()
            write_config(srv, INVALID)
            await asyncio.to_thread(
                wait_until, "an invalid reload counted", lambda: reloads(srv, "invalid") >= 1,
                15.0, srv)
            t_refused = time.monotonic() - t0
            # Nothing changed: the same socket echoes, the old routes serve.
            await ws.send("after")
            assert await ws.recv() == "after"
            assert await ws_status(srv.ws_url("/gone")) == 101
            assert await ws_status(srv.ws_url("/new")) == 404
            # The next (valid) change is applied.
            t1 = time.monotonic()
            write_config(srv, ROUTES_B)
            await asyncio.to_thread(
                wait_until, "a reload applied", lambda: reloads(srv, "ok") >= 1, 15.0, srv)
            while await ws_status(srv.ws_url("/new")) != 101:
                await asyncio.sleep(0.005)
            t_applied = time.monotonic() - t1
            await ws.send("still")
            assert await ws.recv() == "still"
            return t_refused, t_applied

    t_refused, t_applied = run(scenario(), timeout=60)
    log = srv.log()
    # Every problem is said.
    assert "unknown route kind `nope`" in log
    assert "path `no-slash` must start with `/`" in log
    assert "configuration reload refused (configuration file changed, 2 problem(s))" in log
    print(f"\nfile change: refused in {t_refused:.3f}s; valid change serving in {t_applied:.3f}s")


def test_post_reload_needs_the_token_and_answers_what_changed(wssd):
    srv = start(wssd, "--watch-config", "false")
    assert post_reload(srv, token=None)[0] == 401
    assert post_reload(srv, token="wrong-token-wrong-token")[0] == 401
    assert post_reload(srv, method="GET")[0] == 405
    assert reloads(srv, "unauthorized") == 2
    assert reloads(srv, "ok") == 0
    # An invalid configuration: 422 with every problem.
    write_config(srv, INVALID)
    status, body = post_reload(srv)
    assert status == 422, body
    assert "unknown route kind `nope`" in body and "no-slash" in body, body
    assert run(ws_status(srv.ws_url("/gone"))) == 101
    # A valid one: 200 with what changed.
    write_config(srv, ROUTES_B)
    t0 = time.monotonic()
    status, body = post_reload(srv)
    took = time.monotonic() - t0
    assert status == 200, body
    assert "route added: /new" in body and "route removed: /gone" in body, body
    assert run(ws_status(srv.ws_url("/new"))) == 101
    assert reloads(srv, "invalid") == 1 and reloads(srv, "ok") == 1
    # A setting that needs a restart: applied in part, said so.
    write_config(srv, ROUTES_B, extra="max_connections = 77")
    status, body = post_reload(srv)
    assert status == 200 and "needs a restart: --max-connections" in body, body
    assert reloads(srv, "partial") == 1
    print(f"\nPOST /reload answered in {took:.3f}s")


def test_listeners_are_added_and_removed(wssd):
    p1, p2 = free_port(), free_port()
    srv = start(wssd, "--watch-config", "false", http=False,
                extra=f'http = ["127.0.0.1:{p1}"]')
    wait_until("the first listener", lambda: http_get(f"http://127.0.0.1:{p1}/new")[0] == 404)

    async def scenario():
        async with ws_connect(f"ws://127.0.0.1:{p1}/keep") as ws:
            write_config(wssd, ROUTES_A, extra=f'http = ["127.0.0.1:{p2}"]')
            status, body = await asyncio.to_thread(post_reload, srv)
            assert status == 200, body
            assert f"listener added: --http 127.0.0.1:{p2}" in body, body
            assert f"listener removed: --http 127.0.0.1:{p1}" in body, body
            assert await ws_status(f"ws://127.0.0.1:{p2}/keep") == 101
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", p1), timeout=2).close()
            # A connection the removed listener accepted goes on.
            await ws.send("still here")
            assert await ws.recv() == "still here"

    run(scenario(), timeout=30)
    # An address that cannot be bound refuses the whole reload.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        write_config(wssd, ROUTES_B, extra=f'http = ["127.0.0.1:{p2}", "127.0.0.1:{busy}"]')
        status, body = post_reload(srv)
    assert status == 422, body
    assert f"127.0.0.1:{busy}" in body, body
    assert run(ws_status(f"ws://127.0.0.1:{p2}/new")) == 404, "the routes did not change either"
    assert run(ws_status(f"ws://127.0.0.1:{p2}/gone")) == 101


def test_an_upgrade_after_a_listener_change_hands_over_the_current_listeners(wssd, successors):
    p1, p2 = free_port(), free_port()
    srv = start(wssd, "--watch-config", "false", http=False,
                extra=f'http = ["127.0.0.1:{p1}"]')
    write_config(wssd, ROUTES_A, extra=f'http = ["127.0.0.1:{p2}"]')
    status, body = post_reload(srv)
    assert status == 200 and "listener added" in body, body
    srv.signal(signal.SIGUSR2)
    new_pid = new_pid_from_log(srv)
    successors.append(new_pid)
    assert srv.wait() == 0
    # The new process serves the listener the reload added, not the one it removed.
    assert run(ws_status(f"ws://127.0.0.1:{p2}/keep")) == 101
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p1), timeout=2).close()


def test_with_tls_sighup_reloads_routes_listeners_and_certificates(wssd):
    p1, p2 = free_port(), free_port()
    write_config(wssd, ROUTES_A, extra=f'listen = ["127.0.0.1:{p1}"]')
    srv = wssd.start("--config", "wssd.toml", "--watch-config", "false", listen=False,
                     wait=False)
    srv.tls_port = p1
    srv.wait_ready()
    ctx = srv.ssl_context()
    assert run(ws_status_tls(f"wss://127.0.0.1:{p1}/new", ctx)) == 404
    write_config(wssd, ROUTES_B, extra=f'listen = ["127.0.0.1:{p1}", "127.0.0.1:{p2}"]')
    srv.signal(signal.SIGHUP)
    wait_for_log(srv, "configuration reloaded (SIGHUP")
    wait_for_log(srv, "SIGHUP: reloading certificates")
    assert f"listener added: --listen 127.0.0.1:{p2}" in srv.log()
    # The added TLS listener serves with the same certificate, routes as reloaded.
    assert run(ws_status_tls(f"wss://127.0.0.1:{p2}/new", ctx)) == 101
    assert run(ws_status_tls(f"wss://127.0.0.1:{p1}/new", ctx)) == 101
    assert run(ws_status_tls(f"wss://127.0.0.1:{p2}/gone", ctx)) == 404
    assert reloads(srv, "ok") == 1


async def ws_status_tls(url: str, ctx) -> int:
    try:
        async with ws_connect(url, ssl=ctx) as ws:
            await ws.send("ping")
            assert await ws.recv() == "ping"
            return 101
    except InvalidStatus as e:
        return e.response.status_code


@pytest.mark.skipif(SOCKET_ACTIVATE is None, reason="systemd-socket-activate not installed")
def test_socket_activated_listeners_stay_as_the_service_manager_passed_them(wssd):
    port, other = free_port(), free_port()
    write_config(wssd, ROUTES_A, extra=f'http = ["127.0.0.1:{other}"]')
    srv = wssd.start("--tls", "off", "--config", "wssd.toml", "--reload-token", TOKEN,
                     "--watch-config", "false", listen=False,
                     prefix=activate(port, "http"), wait=False)
    first_connection(port)
    srv.wait_ready()
    write_config(wssd, ROUTES_B, extra=f'http = ["127.0.0.1:{free_port()}"]')
    status, body = post_reload(srv)
    assert status == 200, body
    assert "needs a restart: listeners (passed by the service manager" in body, body
    assert "listener added" not in body and "listener removed" not in body, body
    assert reloads(srv, "partial") == 1
    # The routes did change, on the passed socket.
    assert run(ws_status(f"ws://127.0.0.1:{port}/new")) == 101


def test_auth_material_is_read_again_and_only_a_real_change_retires_the_route(wssd):
    tokens = wssd.workdir / "tokens.txt"
    tokens.write_text("alice:alice-token-0123456789\n")
    routes = """
[[route]]
path = "/private"
kind = "echo"
auth = { kind = "token", tokens_file = "tokens.txt" }
"""
    srv = start(wssd, "--watch-config", "false", routes=routes)
    url = srv.ws_url("/private")

    async def scenario():
        headers = {"Authorization": "Bearer alice-token-0123456789"}
        async with ws_connect(url, additional_headers=headers) as ws:
            # The same file again (rewritten, same content): the route is kept.
            tokens.write_text("alice:alice-token-0123456789\n")
            status, body = await asyncio.to_thread(post_reload, srv)
            assert status == 200 and "nothing changed" in body, body
            await ws.send("kept")
            assert await ws.recv() == "kept"
            # A new token file: the route changed; alice's socket gets 1001, bob gets in.
            tokens.write_text("bob:bob-token-0123456789abc\n")
            status, body = await asyncio.to_thread(post_reload, srv)
            assert status == 200 and "route changed: /private" in body, body
            code, _, reason = await asyncio.wait_for(closed_at(ws), GRACE + 10)
            assert (code, reason) == (1001, "route changed by reload")
        assert await ws_status_auth(url, "alice-token-0123456789") == 401
        assert await ws_status_auth(url, "bob-token-0123456789abc") == 101

    run(scenario(), timeout=40)


async def ws_status_auth(url: str, token: str) -> int:
    try:
        async with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            return 101
    except InvalidStatus as e:
        return e.response.status_code


def drivers(upstream_port: int, changed: bool) -> str:
    """An echo (session driver), an exec and a proxy route, and with
    CHANGED=False a route the change removes; CHANGED=True: the three with
    another limit."""
    limit = "max_message_size = 32768\n" if changed else ""
    routes = f"""
[[route]]
path = "/echo"
kind = "echo"
{limit}
[[route]]
path = "/exec"
kind = "exec"
command = "cat"
{limit}
[[route]]
path = "/proxy"
kind = "proxy"
upstream = "ws://127.0.0.1:{upstream_port}"
{limit}
"""
    if not changed:
        routes += """
[[route]]
path = "/gone"
kind = "echo"
"""
    return routes


def test_every_driver_says_why_it_closed_retired_by_a_reload_or_at_sigterm(wssd):
    from websockets.asyncio.server import serve

    upstream_port = free_port()
    srv = start(wssd, "--watch-config", "false", routes=drivers(upstream_port, changed=False))

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async def open_all(paths):
        sockets = []
        for path in paths:
            ws = await ws_connect(srv.ws_url(path))
            await ws.send(f"hello {path}")
            assert await asyncio.wait_for(ws.recv(), 10) == f"hello {path}"
            sockets.append(ws)
        return sockets

    async def scenario():
        async with serve(echo, "127.0.0.1", upstream_port):
            retired = await open_all(["/echo", "/exec", "/proxy", "/gone"])
            closes = [asyncio.create_task(closed_at(ws)) for ws in retired]
            write_config(srv, drivers(upstream_port, changed=True))
            status, body = await asyncio.to_thread(post_reload, srv)
            assert status == 200 and "route removed: /gone" in body, body
            done = await asyncio.wait_for(asyncio.gather(*closes), GRACE + 10)
            assert [(code, reason) for code, _, reason in done] == [
                (1001, "route changed by reload"),
                (1001, "route changed by reload"),
                (1001, "route changed by reload"),
                (1001, "route removed by reload"),
            ], done
            # The new routes serve; SIGTERM's drain still says why it closes.
            serving = await open_all(["/echo", "/exec", "/proxy"])
            closes = [asyncio.create_task(closed_at(ws)) for ws in serving]
            srv.signal(signal.SIGTERM)
            done = await asyncio.wait_for(asyncio.gather(*closes), 15)
            assert [(code, reason) for code, _, reason in done] == [
                (1001, "server shutting down")
            ] * 3, done

    run(scenario(), timeout=60)
    assert srv.wait() == 0
