"""systemd integration with real tools, without systemd as PID 1.

- sd_notify: a NOTIFY_SOCKET datagram listener here sees READY=1 only once
  /readyz answers 200, STATUS lines, RELOADING=1 + MONOTONIC_USEC then READY=1
  on SIGHUP, STOPPING=1 on SIGTERM, WATCHDOG=1 every WATCHDOG_USEC/2.
- socket activation: `systemd-socket-activate` binds the port and passes the
  fd (LISTEN_FDS, LISTEN_FDNAMES): `http` is a plain listener, any other name
  a TLS one; the passed fds replace --listen/--http.
- deploy/*.service and *.socket pass `systemd-analyze verify`, with the man
  page `wssd man` prints.
- MemoryDenyWriteExecute=yes in the unit: wssd serves TLS under the kernel's
  own MDWE (prctl PR_SET_MDWE), which refuses the same mappings.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, free_port, http_get, port_open, run, wssd_bin, ws_connect

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


class NotifyListener:
    """A service manager's notification socket: one datagram per sd_notify call."""

    def __init__(self):
        # AF_UNIX paths are short (108 bytes): not under pytest's tmp_path.
        self.dir = tempfile.mkdtemp(prefix="wssd-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.seen: list[dict[str, str]] = []

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.path}

    def next(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        msg = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.seen.append(msg)
        return msg

    def wait_for(self, key: str, timeout: float = 20.0, skip: tuple[str, ...] = ("WATCHDOG",)) -> tuple[dict[str, str], list[dict[str, str]]]:
        """The next message with KEY, and the ones before it (but SKIP keys)."""
        before = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.next(left)
            if msg is None:
                break
            if key in msg:
                return msg, before
            if not any(k in msg for k in skip):
                before.append(msg)
        raise AssertionError(f"no {key} within {timeout}s; saw {self.seen}")

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify():
    listener = NotifyListener()
    yield listener
    listener.close()


def readyz(srv) -> int:
    return http_get(f"http://127.0.0.1:{srv.admin_port}/readyz", timeout=2)[0]


# -- sd_notify -----------------------------------------------------------------

def test_ready_comes_when_readyz_is_ready_and_stopping_on_sigterm(wssd, notify):
    srv = wssd.start("--route", "/ws/echo=echo", http=True, env=notify.env(), wait=False)
    ready, before = notify.wait_for("READY")
    assert before == [], f"messages before READY=1: {before}"
    # READY=1 is sent the moment /readyz turns ready: it answers 200 already.
    assert readyz(srv) == 200, "READY=1 came before /readyz was ready"
    assert port_open(srv.tls_port) and port_open(srv.http_port)
    status = ready.get("STATUS", "")
    assert status.startswith("serving 1 route(s) on "), status
    assert f"127.0.0.1:{srv.tls_port} (TLS)" in status, status
    assert f"127.0.0.1:{srv.http_port} (plain)" in status, status
    assert f"admin 127.0.0.1:{srv.admin_port}" in status, status

    srv.signal(signal.SIGTERM)
    stopping, _ = notify.wait_for("STOPPING", timeout=10)
    assert stopping["STOPPING"] == "1"
    assert stopping.get("STATUS", "").startswith("draining "), stopping
    assert srv.wait() == 0


def test_sighup_brackets_the_certificate_reload(wssd, notify):
    wssd.start(env=notify.env(), wait=False)
    ready, _ = notify.wait_for("READY")
    wssd.signal(signal.SIGHUP)
    reloading, _ = notify.wait_for("RELOADING", timeout=10)
    assert reloading["RELOADING"] == "1"
    usec = int(reloading["MONOTONIC_USEC"])
    assert abs(usec / 1e6 - time.monotonic()) < 60, "MONOTONIC_USEC is not CLOCK_MONOTONIC"
    again, _ = notify.wait_for("READY", timeout=10)
    assert again["STATUS"] == ready["STATUS"]
    assert wssd.proc.poll() is None
    assert readyz(wssd) == 200
    assert "SIGHUP: reloading certificates" in wssd.log()


def test_sighup_with_tls_off_is_answered_not_fatal(wssd, notify):
    # SIGHUP's default action ends the process; with TLS off nothing else
    # listens for it.
    srv = wssd.start("--tls", "off", listen=False, http=True, env=notify.env(), wait=False)
    notify.wait_for("READY")
    srv.signal(signal.SIGHUP)
    notify.wait_for("RELOADING", timeout=10)
    notify.wait_for("READY", timeout=10)
    assert srv.proc.poll() is None, f"SIGHUP ended wssd\n{srv.log_tail()}"
    assert readyz(srv) == 200
    assert srv.stop() == 0


def test_watchdog_every_half_period(wssd, notify):
    env = notify.env() | {"WATCHDOG_USEC": "200000"}
    wssd.start(env=env, wait=False)
    notify.wait_for("READY")
    start = time.monotonic()
    for _ in range(5):
        notify.wait_for("WATCHDOG", timeout=2, skip=())
    elapsed = time.monotonic() - start
    # Every 100 ms: five pings take about half a second, not 5 x 200 ms.
    assert elapsed < 0.9, f"5 watchdog pings took {elapsed:.2f}s"


def test_watchdog_for_another_pid_is_ignored(wssd, notify):
    env = notify.env() | {"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}
    wssd.start(env=env, wait=False)
    notify.wait_for("READY")
    extra = notify.next(0.5)
    assert extra is None, f"unexpected message {extra}: WATCHDOG_PID names another process"


# -- socket activation ---------------------------------------------------------

needs_activate = pytest.mark.skipif(SOCKET_ACTIVATE is None,
                                     reason="systemd-socket-activate not installed (package systemd)")


def first_connection(port: int, timeout: float = 10.0) -> None:
    """Connect once systemd-socket-activate listens (refused until then); the
    connection makes it exec wssd with the fd."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def activate(port: int, fdname: str, notify: NotifyListener | None = None) -> list[str]:
    cmd = [SOCKET_ACTIVATE, "-l", f"127.0.0.1:{port}", f"--fdname={fdname}"]
    if notify is not None:
        cmd.append(f"--setenv=NOTIFY_SOCKET={notify.path}")
    return cmd


@needs_activate
def test_socket_activated_plain_listener(wssd, notify):
    port, ignored = free_port(), free_port()
    srv = wssd.start("--tls", "off", "--http", f"127.0.0.1:{ignored}", "--route", "/ws/echo=echo",
                     listen=False, prefix=activate(port, "http", notify), wait=False)
    first_connection(port)

    async def echo():
        async with ws_connect(f"ws://127.0.0.1:{port}/ws/echo") as ws:
            await ws.send("activated")
            return await ws.recv()

    assert run(echo()) == "activated"
    srv.wait_ready()
    ready, _ = notify.wait_for("READY")
    assert f"127.0.0.1:{port} (plain)" in ready["STATUS"], ready
    # The passed fd replaced --http: its address was never bound.
    assert not port_open(ignored), "--http was bound although a socket was passed"
    assert "replace --listen" in srv.log()
    assert srv.stop() == 0


@needs_activate
def test_socket_activated_tls_listener(wssd):
    port = free_port()
    srv = wssd.start("--route", "/ws/echo=echo", listen=False,
                     prefix=activate(port, "https"), wait=False)
    first_connection(port)
    srv.wait_ready()

    async def echo():
        async with ws_connect(f"wss://127.0.0.1:{port}/ws/echo", ssl=srv.ssl_context()) as ws:
            await ws.send("over TLS")
            return await ws.recv()

    assert run(echo()) == "over TLS"
    assert f"listening on 127.0.0.1:{port} (TLS)" in srv.log()
    assert srv.stop() == 0


@needs_activate
def test_tls_named_fd_with_tls_off_is_refused(wssd):
    port = free_port()
    srv = wssd.start("--tls", "off", listen=False, prefix=activate(port, "wss"), wait=False)
    first_connection(port)
    assert srv.wait(10) == 1
    log = srv.log()
    assert "socket-activated fd 3 (FileDescriptorName=wss)" in log, log
    assert "FileDescriptorName=http" in log, log


@needs_activate
def test_programs_do_not_inherit_the_systemd_variables(wssd, notify):
    # Even an exec route that asks for them (pass_env) finds them removed.
    names = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET"]
    script = "echo " + ",".join(f"${{{n}-unset}}" for n in names) + "; read line"
    config = wssd.workdir / "systemd-env.toml"
    config.write_text(
        "[[route]]\npath = \"/ws/env\"\nkind = \"exec\"\n"
        f"command = [\"sh\", \"-c\", \"{script}\"]\npass_env = {names!r}\n".replace("'", '"'))
    port = free_port()
    srv = wssd.start("--tls", "off", "--config", str(config), listen=False,
                     prefix=activate(port, "http", notify), wait=False)
    first_connection(port)
    srv.wait_ready()

    async def env_seen():
        async with ws_connect(f"ws://127.0.0.1:{port}/ws/env") as ws:
            return await ws.recv()

    assert run(env_seen()) == "unset,unset,unset,unset"
    assert srv.stop() == 0


def test_listen_fds_for_another_pid_are_ignored(wssd):
    # LISTEN_PID names another process: fd 3 is not ours; bind --listen as usual.
    srv = wssd.start(env={"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http"})
    assert port_open(srv.tls_port)
    assert "replace --listen" not in srv.log()


# -- units -----------------------------------------------------------------------

@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (package systemd)")
def test_units_pass_systemd_analyze_verify(tmp_path):
    binary = wssd_bin()
    units = sorted((REPO_ROOT / "deploy").glob("*.s*"))
    names = {u.name for u in units}
    assert {"wssd.service", "wssd.socket", "wssd-http.socket"} <= names, names
    # verify checks that ExecStart's program exists: point it at the build.
    for unit in units:
        text = unit.read_text().replace("/usr/bin/wssd", str(binary))
        (tmp_path / unit.name).write_text(text)
    # ... and that Documentation=man:wssd(1) opens: the page `wssd man` prints.
    man1 = tmp_path / "man" / "man1"
    man1.mkdir(parents=True)
    with open(man1 / "wssd.1", "wb") as page:
        subprocess.run([str(binary), "man"], stdout=page, check=True, timeout=10)
    env = dict(os.environ, MANPATH=str(tmp_path / "man"))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", *[str(tmp_path / n) for n in sorted(names)]],
                            capture_output=True, text=True, env=env, timeout=60)
    # verify exits 0 on unknown keys and bad values too: its output must be empty.
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output
    service = (REPO_ROOT / "deploy" / "wssd.service").read_text()
    for line in ["Type=notify", "DynamicUser=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                 "ProtectSystem=strict", "StateDirectory=wssd", "NoNewPrivileges=yes",
                 "MemoryDenyWriteExecute=yes", "SystemCallFilter=@system-service",
                 "ExecReload=/bin/kill -HUP $MAINPID"]:
        assert re.search(rf"^{re.escape(line)}$", service, re.M), f"wssd.service lacks {line}"


PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1


def _set_mdwe():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def _mdwe_supported() -> bool:
    probe = "import ctypes; print(ctypes.CDLL(None).prctl(66, 0, 0, 0, 0))"
    try:
        out = subprocess.run(["python3", "-c", probe], preexec_fn=_set_mdwe,
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return out == "1"


def test_tls_works_under_memory_deny_write_execute(wssd):
    if not _mdwe_supported():
        pytest.skip("kernel without PR_SET_MDWE (Linux 6.3+): MemoryDenyWriteExecute not testable here")
    # A Python that turns MDWE on and execs wssd (MDWE survives execve).
    prefix = ["python3", "-c",
              "import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True);"
              f" assert libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0;"
              " os.execv(sys.argv[1], sys.argv[1:])"]
    srv = wssd.start("--route", "/ws/echo=echo", prefix=prefix)
    assert Path(f"/proc/{srv.proc.pid}/comm").read_text().strip() == "wssd"

    async def echo():
        async with ws_connect(srv.wss_url(), ssl=srv.ssl_context()) as ws:
            await ws.send("no W^X needed")
            return await ws.recv()

    assert run(echo()) == "no W^X needed"
    assert srv.stop() == 0
