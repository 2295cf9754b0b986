"""Zero-downtime binary upgrade (SIGUSR2) with the real binary.

wssd runs from a copy of the binary in the test's folder, so the test can
replace the file on disk as an operator would. On SIGUSR2 the old process
starts the file at its path with the listeners handed over; once the new one
is ready the old one closes its WebSockets with 1001 and exits.

- A client connecting in a loop (new TCP + TLS + WebSocket echo each time)
  across the upgrade sees no refused or failed connection; a WebSocket open
  on the old process gets 1001; the new pid serves afterwards (TLS, plain
  and admin listeners) and the old pid has exited; under a NOTIFY_SOCKET
  the old process announces MAINPID=<new pid> and never STOPPING=1.
- A broken new binary (a script exiting 3 at the path) leaves the old process
  serving, logs why and counts it; restoring the binary then upgrades.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import ssl
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, WebSocketException

from conftest import http_get, metric_samples, run, wssd_bin, ws_connect
from test_systemd import NotifyListener

NEW_PID = re.compile(r"the new process is ready; this one stops accepting pid=(\d+)")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def own_binary(tmp_path, monkeypatch):
    """A copy of wssd at a path of the test's own; WSSD_BIN points to it."""
    folder = tmp_path / "bin"
    folder.mkdir()
    path = folder / "wssd"
    shutil.copy2(wssd_bin(), path)
    monkeypatch.setenv("WSSD_BIN", str(path))
    return path


@pytest.fixture
def successors(wssd):
    """PIDs of upgraded processes (not our children), as the test's wssd
    logged them: stopped at teardown, even when the test failed early."""
    pids: list[int] = []
    yield pids
    pids += [int(p) for p in NEW_PID.findall(wssd.log())]
    for pid in dict.fromkeys(pids):
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, 15):
                os.kill(pid, signal.SIGKILL)


def replace_file(path: Path, source: Path | None = None, script: str | None = None):
    """Replace PATH as `install` does: a new file renamed over it (the running
    binary's file cannot be written)."""
    tmp = path.with_name(path.name + ".new")
    if source is not None:
        shutil.copy2(source, tmp)
    else:
        tmp.write_text(script)
        tmp.chmod(0o755)
    os.replace(tmp, path)


def new_pid_from_log(srv, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = NEW_PID.search(srv.log())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise AssertionError(f"no successful upgrade in the log\n{srv.log_tail()}")


async def echo_once(url: str, ctx: ssl.SSLContext | None, text: str) -> None:
    async with ws_connect(url, ssl=ctx, open_timeout=5, close_timeout=5) as ws:
        await ws.send(text)
        assert await asyncio.wait_for(ws.recv(), 5) == text


def test_upgrade_refuses_no_connection_and_closes_old_sockets_with_1001(
    wssd, own_binary, successors
):
    notify = NotifyListener()
    try:
        srv = wssd.start("--drain-timeout", "2", http=True, env=notify.env())
        notify.wait_for("READY")
        ctx = srv.ssl_context()
        old_pid = srv.proc.pid

        async def main():
            held = await ws_connect(srv.wss_url(), ssl=ctx)
            await held.send("held")
            assert await held.recv() == "held"
            ok, failures = 0, []
            stop_at = None
            start = time.monotonic()
            signalled = False
            # Connect in a loop: ~1 s before the upgrade, then until 1.5 s
            # after the old process has exited (at most ~5 s in all).
            while time.monotonic() - start < 8:
                if not signalled and time.monotonic() - start > 1.0:
                    srv.signal(signal.SIGUSR2)
                    signalled = True
                if signalled and stop_at is None and srv.proc.poll() is not None:
                    stop_at = time.monotonic() + 1.5
                if stop_at is not None and time.monotonic() > stop_at:
                    break
                try:
                    await echo_once(srv.wss_url(), ctx, f"m{ok}")
                    ok += 1
                except (OSError, WebSocketException, asyncio.TimeoutError, AssertionError) as e:
                    failures.append(repr(e))
            try:
                msg = await asyncio.wait_for(held.recv(), 10)
                raise AssertionError(f"the old socket got {msg!r} instead of a close")
            except ConnectionClosed as exc:
                return ok, failures, exc, stop_at is not None

        ok, failures, closed, old_exited = run(main(), timeout=60)
        assert old_exited, f"the old process did not exit within the loop\n{srv.log_tail()}"
        assert failures == [], f"{len(failures)} failed connection(s) out of {ok + len(failures)}: {failures[:5]}"
        assert ok >= 10, f"only {ok} connections in the loop"
        assert closed.rcvd is not None and closed.rcvd.code == 1001, f"old socket: {closed!r}"
        assert srv.wait(15) == 0, srv.log_tail()

        new_pid = new_pid_from_log(srv)
        successors.append(new_pid)
        assert new_pid != old_pid and alive(new_pid)
        # The new process serves every listener: TLS, plain, admin.
        run(echo_once(srv.wss_url(), ctx, "after"))
        run(echo_once(srv.ws_url(), None, "plain after"))
        status, _, body = http_get(f"http://127.0.0.1:{srv.admin_port}/readyz")
        assert status == 200, body
        samples = metric_samples(srv, "wssd_upgrades_total")
        assert samples == {}, f"the new process counts no upgrade of its own: {samples}"
        # systemd follows the new main pid; the service never looked stopping.
        msg, before = notify.wait_for("MAINPID", timeout=10)
        assert msg["MAINPID"] == str(new_pid), msg
        assert not any("STOPPING" in m for m in notify.seen), notify.seen
        assert any("READY" in m for m in before), f"the new process said READY=1 first: {before}"
        print(f"upgrade: {ok} connections, 0 failed; old pid {old_pid} -> new pid {new_pid}")
    finally:
        notify.close()


def test_a_broken_new_binary_leaves_the_old_one_serving(wssd, own_binary, successors, tmp_path):
    good = tmp_path / "wssd.good"
    shutil.copy2(own_binary, good)
    srv = wssd.start()
    ctx = srv.ssl_context()
    replace_file(own_binary, script="#!/bin/sh\necho 'broken build' >&2\nexit 3\n")
    srv.signal(signal.SIGUSR2)
    deadline = time.monotonic() + 15
    while "upgrade failed" not in srv.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "upgrade failed, this process keeps serving" in srv.log(), srv.log_tail()
    assert "exit status: 3" in srv.log(), srv.log_tail()
    assert srv.proc.poll() is None, "the old process must keep running"
    run(echo_once(srv.wss_url(), ctx, "still here"))
    samples = metric_samples(srv, "wssd_upgrades_total")
    assert samples.get('{result="failed"}') == 1, samples
    # A good binary back at the path: the next SIGUSR2 upgrades.
    replace_file(own_binary, source=good)
    srv.signal(signal.SIGUSR2)
    new_pid = new_pid_from_log(srv)
    successors.append(new_pid)
    assert srv.wait(15) == 0, srv.log_tail()
    run(echo_once(srv.wss_url(), ctx, "new binary"))


def wait_delivered(proc, timeout: float = 5.0) -> None:
    """Until no signal is pending for PROC (or it exited)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except FileNotFoundError:
            return
        pending = [l.split()[1] for l in status.splitlines()
                   if l.startswith(("SigPnd:", "ShdPnd:"))]
        if all(int(p, 16) == 0 for p in pending):
            return
        time.sleep(0.01)


def test_sighup_and_sigusr2_during_startup_do_not_kill_the_server(wssd, tmp_path):
    """The configuration file is a FIFO: wssd blocks reading it, so the test
    knows it is inside startup (its open for writing returns only once wssd
    opened the FIFO). SIGHUP and SIGUSR2 sent then used to end the process
    (their default action); now they are ignored and logged, and the server
    starts and serves."""
    fifo = tmp_path / "wssd.toml"
    os.mkfifo(fifo)
    wssd.start("--tls", "off", "--route", "/=echo", "--config", str(fifo),
               listen=False, http=True, wait=False)
    # Blocks until wssd opens the FIFO to read it (bounded: wssd is starting).
    with open(fifo, "w") as f:
        os.kill(wssd.proc.pid, signal.SIGHUP)
        os.kill(wssd.proc.pid, signal.SIGUSR2)
        # Delivered once no longer pending (/proc: SigPnd and ShdPnd clear)
        # or the process is gone; both while wssd is blocked on the FIFO.
        wait_delivered(wssd.proc)
        assert wssd.proc.poll() is None, f"wssd died from a startup signal\n{wssd.log_tail()}"
        f.write("# empty: everything comes from the flags\n")
    wssd.wait_ready()
    run(echo_once(f"ws://127.0.0.1:{wssd.http_port}/", None, "after startup signals"))
    log = wssd.log()
    assert "SIGHUP arrived while starting and was ignored" in log, log
    assert "SIGUSR2 arrived while starting and was ignored" in log, log
