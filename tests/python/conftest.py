"""Helpers for the end-to-end tests: run the real wssd binary on loopback.

The binary is `$WSSD_BIN`, or `<target>/debug/wssd` (target = $CARGO_TARGET_DIR
or <repo>/target). Each server gets free ports, its own temporary state folder
and admin listener, and runs in its own temporary working folder (so no
wssd.toml or .env of the developer's is read) with no WSSD_* variables from
the caller's environment. It is ready when the admin listener's /readyz
answers 200 and its listeners accept TCP connections.

Use the `wssd` fixture: `srv = wssd.start("--route", "/x=echo", http=True)`,
then `srv.wss_url("/ws/echo")`, `srv.ssl_context()`, `srv.stop()`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as _ws_connect

REPO_ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def wssd_bin() -> Path:
    env = os.environ.get("WSSD_BIN")
    if env:
        return Path(env).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target")
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "wssd"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_request(method: str, url: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 10.0,
                 context: ssl.SSLContext | None = None):
    """METHOD url (no proxy) with BODY and HEADERS, https:// verified with
    CONTEXT when given; returns (status, headers, body), also for 4xx/5xx answers."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def http_get(url: str, context: ssl.SSLContext | None = None, timeout: float = 5.0):
    """GET url ignoring any proxy settings; returns (status, headers, body)."""
    return http_request("GET", url, timeout=timeout, context=context)


_CONNECT_PARAMS = inspect.signature(_ws_connect.__init__).parameters


def ws_connect(url: str, **kwargs):
    """websockets' asyncio connect with test defaults: no proxy from the
    environment, no compression, a 32 MiB receive limit, a 10 s open timeout."""
    kwargs.setdefault("compression", None)
    kwargs.setdefault("max_size", 32 * MiB)
    kwargs.setdefault("open_timeout", 10)
    kwargs.setdefault("close_timeout", 5)
    if "proxy" in _CONNECT_PARAMS:  # websockets >= 15 reads proxies from the environment
        kwargs.setdefault("proxy", None)
    return _ws_connect(url, **kwargs)


def run(coro, timeout: float = 30.0):
    """Run a coroutine to completion with an overall time limit."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Wssd:
    """One wssd process started for a test."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir = workdir / "state"
        self.log_path = workdir / "wssd.log"
        self.proc: subprocess.Popen | None = None
        self.tls_port: int | None = None
        self.http_port: int | None = None
        self.admin_port: int | None = None
        self.args: list[str] = []

    # -- lifecycle ---------------------------------------------------------

    def start(self, *args: str, listen: bool = True, http: bool = False,
              ready_timeout: float = READY_TIMEOUT,
              env: dict[str, str] | None = None,
              prefix: list[str] | None = None, wait: bool = True) -> "Wssd":
        """Start `wssd serve` with a TLS listener (listen=True) and/or a plain
        one (http=True) on free loopback ports, plus ARGS; wait until ready
        (unless wait=False: then call .wait_ready()). ENV adds variables to the
        child's environment (WSSD_* ones included); PREFIX runs wssd through
        another program (e.g. systemd-socket-activate ...)."""
        assert self.proc is None, "this Wssd is already started"
        binary = wssd_bin()
        if not binary.is_file():
            pytest.fail(f"wssd binary not found at {binary}: run `cargo build --bin wssd` "
                        "or set WSSD_BIN")
        cmd = list(prefix or []) + [str(binary), "serve"]
        if listen:
            self.tls_port = free_port()
            cmd += ["--listen", f"127.0.0.1:{self.tls_port}"]
        if http:
            self.http_port = free_port()
            cmd += ["--http", f"127.0.0.1:{self.http_port}"]
        self.admin_port = free_port()
        cmd += ["--state-dir", str(self.state_dir), "--admin", f"127.0.0.1:{self.admin_port}"]
        cmd += list(args)
        self.args = cmd
        extra_env = env
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSSD_")}
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(extra_env or {})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self._wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> "Wssd":
        """After start(wait=False): wait until /readyz answers 200."""
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.admin_port}/readyz"
        last = "no answer"
        while True:
            code = self.proc.poll()
            if code is not None:
                pytest.fail(f"wssd exited with status {code} before it was ready\n"
                            f"command: {' '.join(self.args)}\n{self.log_tail()}")
            try:
                status, _, body = http_get(url, timeout=1.0)
                last = f"{status} {body[:200]!r}"
                if status == 200 and all(port_open(p) for p in self.ports()):
                    return
            except OSError as err:
                last = repr(err)
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"wssd was not ready within {timeout:.0f}s (last /readyz: {last})\n"
                            f"command: {' '.join(self.args)}\n{self.log_tail()}")
            time.sleep(0.05)

    def ports(self) -> list[int]:
        return [p for p in (self.tls_port, self.http_port) if p is not None]

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to exit; fail the test if it does not."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"wssd did not exit within {timeout:.0f}s\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait for exit; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = self.log().splitlines()[-lines:]
        return "wssd output (last lines):\n" + "\n".join("  | " + line for line in tail)

    # -- addresses and TLS -------------------------------------------------

    @property
    def cert_path(self) -> Path:
        """The self-signed certificate wssd generates in its state folder."""
        return self.state_dir / "self-signed" / "cert.pem"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this server's self-signed
        certificate, with full verification (chain and hostname)."""
        assert self.cert_path.is_file(), f"no certificate at {self.cert_path}"
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.cert_path))
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        return ctx

    def wss_url(self, path: str = "/ws/echo", host: str = "127.0.0.1") -> str:
        assert self.tls_port is not None, "no TLS listener"
        return f"wss://{host}:{self.tls_port}{path}"

    def https_url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        assert self.tls_port is not None, "no TLS listener"
        return f"https://{host}:{self.tls_port}{path}"

    def ws_url(self, path: str = "/ws/echo", host: str = "127.0.0.1") -> str:
        assert self.http_port is not None, "no plain listener"
        return f"ws://{host}:{self.http_port}{path}"

    def http_url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        assert self.http_port is not None, "no plain listener"
        return f"http://{host}:{self.http_port}{path}"


@pytest.fixture
def wssd(tmp_path):
    """A not-yet-started Wssd; call .start(...). Killed at teardown if still running."""
    server = Wssd(tmp_path / "wssd")
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()


# -- helpers for the chat / broadcast / publish tests -------------------------

def metric_samples(server: "Wssd", name: str) -> dict[str, float]:
    """The samples of metric NAME on the server's admin /metrics, as
    {'{labels}': value} ('' when it has no labels)."""
    status, _, body = http_get(f"http://127.0.0.1:{server.admin_port}/metrics")
    assert status == 200, f"/metrics answered {status}"
    samples: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        key, _, value = line.rpartition(" ")
        rest = key[len(name):]
        if rest and not rest.startswith("{"):
            continue  # another metric whose name starts with NAME
        samples[rest] = float(value)
    return samples
