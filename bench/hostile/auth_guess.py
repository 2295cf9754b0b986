#!/usr/bin/env python3
"""bench/hostile/auth_guess.py: how fast one address can guess a route's
bearer token (issue 12 item 1).

Starts BINARY (`wssd serve` with a plain listener on 127.0.0.1 and one
static route behind `auth = { kind = "token" }`, state and files in a
temporary folder), then for SECONDS sends wrong tokens from 127.0.0.1 as
fast as one keep-alive HTTP connection allows, counting 401 (the guess was
checked) and 429 (refused unchecked by the backoff). Then a client with
the valid token, from the same address: what it gets at once, and after
waiting the Retry-After it was given.

Prints one line per figure and stops the server (by its PID). Bounded:
one connection, SECONDS of guessing, loopback only, stdlib only.

Usage: bench/hostile/auth_guess.py [BINARY] [--seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time

TOKEN = "the-valid-route-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary: str, workdir: str) -> tuple[subprocess.Popen, int]:
    http_port, admin_port = free_port(), free_port()
    site = os.path.join(workdir, "site")
    os.makedirs(site)
    with open(os.path.join(site, "index.html"), "w") as f:
        f.write("inside\n")
    with open(os.path.join(workdir, "tokens.txt"), "w") as f:
        f.write(f"bench:{TOKEN}\n")
    config = os.path.join(workdir, "wssd.toml")
    with open(config, "w") as f:
        f.write(
            "[[route]]\npath = \"/\"\nkind = \"static\"\n"
            f"dir = \"{site}\"\n"
            f"auth = {{ kind = \"token\", tokens_file = \"{workdir}/tokens.txt\" }}\n"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSD_")}
    cmd = [binary, "serve", "--tls", "off", "--http", f"127.0.0.1:{http_port}",
           "--admin", f"127.0.0.1:{admin_port}", "--state-dir", os.path.join(workdir, "state"),
           "--config", config]
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
                return proc, http_port
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("wssd was not ready within 20 s")


def get(conn: http.client.HTTPConnection, token: str) -> tuple[int, str | None]:
    conn.request("GET", "/", headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    resp.read()
    return resp.status, resp.getheader("Retry-After")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default="target/debug/wssd")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start(args.binary, workdir)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            counts: dict[int, int] = {}
            retry_after = "1"
            start_t = time.monotonic()
            i = 0
            while time.monotonic() - start_t < args.seconds:
                i += 1
                try:
                    status, ra = get(conn, f"wrong-guess-{i:016d}")
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    continue
                counts[status] = counts.get(status, 0) + 1
                if ra:
                    retry_after = ra
            elapsed = time.monotonic() - start_t
            checked, refused = counts.get(401, 0), counts.get(429, 0)
            print(f"guess attempts from one IP: {i} in {elapsed:.1f} s ({i / elapsed:.0f}/s)")
            print(f"wrong guesses checked (401): {checked} ({checked / elapsed:.2f}/s)")
            print(f"guesses refused unchecked (429): {refused}")
            # The bucket drains one slot every 2 s: make sure it is full
            # (a guess refused) right before the valid client tries.
            for _ in range(20):
                i += 1
                status, ra = get(conn, f"wrong-guess-{i:016d}")
                retry_after = ra or retry_after
                if status == 429:
                    break
            status, _ = get(conn, TOKEN)
            print(f"valid token at once from the same IP (while over): {status}")
            waited = time.monotonic()
            time.sleep(float(retry_after))
            status, _ = get(conn, TOKEN)
            print(f"valid token after Retry-After {retry_after} s "
                  f"({time.monotonic() - waited:.1f} s later): {status}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
