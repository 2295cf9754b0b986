#!/usr/bin/env python3
"""bench/hostile/password_guess.py: how fast one address can guess the chat
moderator password and the publish token (issue 10 item 5).

Starts BINARY (`wssd serve` with a plain listener, a chat route, a
moderator password and a publish token, all on 127.0.0.1, state in a
temporary folder), then for SECONDS:

- opens CONNECTIONS WebSockets from 127.0.0.1 to the chat route, each
  sending one wrong `auth` per second (the per-connection limit) and
  reconnecting when the server closes it after five wrong ones; counts the
  guesses the server checked (`bad_password` answers) and those it refused
  unchecked (`rate_limited`);
- then sends wrong bearer tokens to `POST /publish/...` as fast as one
  keep-alive HTTP connection allows; counts 401 (checked) and 429 (refused).

Prints one line per figure and stops the server (by its PID). Bounded: at
most CONNECTIONS sockets, SECONDS per phase, loopback only.

Usage: bench/hostile/password_guess.py BINARY [--connections 100] [--seconds 5]
Needs: Python 3.10+, websockets >= 13.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

PASSWORD = "the real moderator password"
TOKEN = "the-real-publish-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary: str, workdir: str) -> tuple[subprocess.Popen, int, int]:
    http_port, admin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSD_")}
    env["WSSD_MOD_PASSWORD"] = PASSWORD
    cmd = [binary, "serve", "--http", f"127.0.0.1:{http_port}", "--admin", f"127.0.0.1:{admin_port}",
           "--state-dir", os.path.join(workdir, "state"), "--route", "/ws/chat=chat",
           "--route", "/ws/news=broadcast", "--publish-token", TOKEN]
    log = open(os.path.join(workdir, "wssd.log"), "wb")
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"wssd exited with status {proc.returncode}; log in {workdir}/wssd.log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, http_port, admin_port
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("wssd was not ready within 20 s")


async def guesser(url: str, until: float, counts: dict[str, int], n: int) -> None:
    guess = 0
    while time.monotonic() < until:
        try:
            async with connect(url, compression=None, open_timeout=5, close_timeout=1) as ws:
                while time.monotonic() < until:
                    guess += 1
                    sent = time.monotonic()
                    await ws.send(json.dumps({"type": "auth", "password": f"guess {n}.{guess}"}))
                    answer = json.loads(await asyncio.wait_for(ws.recv(), until - sent + 2))
                    code = answer.get("code", answer.get("type"))
                    counts[code] = counts.get(code, 0) + 1
                    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - sent)) + 0.01)
        except ConnectionClosed as exc:
            # The fifth wrong password on a connection: checked, then closed.
            if exc.rcvd is not None and exc.rcvd.code == 1008:
                counts["bad_password"] = counts.get("bad_password", 0) + 1
        except (OSError, InvalidStatus, asyncio.TimeoutError):
            await asyncio.sleep(0.1)


async def chat_phase(http_port: int, connections: int, seconds: float) -> tuple[dict[str, int], float]:
    url = f"ws://127.0.0.1:{http_port}/ws/chat"
    counts: dict[str, int] = {}
    start = time.monotonic()
    until = start + seconds
    await asyncio.gather(*[guesser(url, until, counts, n) for n in range(connections)])
    return counts, time.monotonic() - start


def publish_phase(admin_port: int, seconds: float) -> tuple[dict[int, int], float]:
    counts: dict[int, int] = {}
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    i = 0
    while time.monotonic() - start < seconds:
        i += 1
        try:
            conn.request("POST", "/publish/ws/news", body=b"x",
                         headers={"Authorization": f"Bearer wrong-{i}"})
            resp = conn.getresponse()
            resp.read()
            counts[resp.status] = counts.get(resp.status, 0) + 1
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    conn.close()
    return counts, time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="wssd-guess-") as workdir:
        proc, http_port, admin_port = start(args.binary, workdir)
        try:
            counts, took = asyncio.run(chat_phase(http_port, args.connections, args.seconds))
            checked = counts.get("bad_password", 0)
            print(f"moderator password: {checked / took:.1f} guesses checked/s from one IP with "
                  f"{args.connections} connections ({checked} checked, {counts.get('rate_limited', 0)} "
                  f"refused unchecked in {took:.1f} s) [{args.binary}]")
            codes, took = publish_phase(admin_port, args.seconds)
            print(f"publish token: {codes.get(401, 0) / took:.1f} guesses checked/s from one IP "
                  f"({codes.get(401, 0)} x 401, {codes.get(429, 0)} x 429 in {took:.1f} s) [{args.binary}]")
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
