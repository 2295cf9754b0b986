"""The local CA's install page (issue 13 item 4), against the real binary:
the iOS profile is a valid plist carrying the CA's DER certificate, and the
QR codes (on the page as SVG, in the terminal as half blocks) decode, with
a real QR decoder (zbarimg, Debian's zbar-tools), to the page's URL."""

import hashlib
import plistlib
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from conftest import http_get

HALF_BLOCKS = set("\u2588\u2580\u2584 ")


def zbarimg(image: Path) -> str:
    tool = shutil.which("zbarimg")
    if tool is None:
        pytest.fail("zbarimg not found: run scripts/install-test-deps (Debian package zbar-tools)")
    out = subprocess.run([tool, "-q", "--raw", str(image)], capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out.stdout.decode().strip()


def terminal_qr_to_pbm(log: str, path: Path) -> None:
    """The half-block QR from wssd's output as a PBM bitmap: a full block is
    two light modules, an upper or lower half block one, a space none."""
    lines = [l for l in log.splitlines() if l.strip() and set(l) <= HALF_BLOCKS]
    assert len(lines) > 10, log
    rows = []
    for line in lines:
        rows.append([c in "\u2588\u2580" for c in line])
        rows.append([c in "\u2588\u2584" for c in line])
    width, scale = max(len(r) for r in rows), 6
    with open(path, "w") as f:
        f.write(f"P1\n{width * scale} {len(rows) * scale}\n")
        for r in rows:
            line = " ".join("0" if i < len(r) and r[i] else "1"
                            for i in range(width) for _ in range(scale))
            for _ in range(scale):
                f.write(line + "\n")


@pytest.fixture
def page(wssd):
    wssd.start("--tls", "local-ca", "--route", "/ca=ca", "--route", "/ws/echo=echo", http=True)
    return wssd


def test_mobileconfig_is_a_plist_carrying_the_ca(page):
    base = f"http://127.0.0.1:{page.http_port}/ca"
    status, headers, body = http_get(f"{base}/wssd-local-ca.mobileconfig")
    assert status == 200
    assert headers["content-type"] == "application/x-apple-aspen-config"
    profile = plistlib.loads(body)
    assert profile["PayloadType"] == "Configuration"
    (payload,) = profile["PayloadContent"]
    assert payload["PayloadType"] == "com.apple.security.root"
    status, _, der = http_get(f"{base}/ca.crt")
    assert status == 200
    assert payload["PayloadContent"] == der
    pem = (page.state_dir / "local-ca" / "ca.pem").read_text()
    assert ssl.PEM_cert_to_DER_cert(pem) == der
    assert profile["PayloadUUID"] != payload["PayloadUUID"]


def test_qr_codes_decode_to_the_page_url(page, tmp_path):
    url = f"http://127.0.0.1:{page.http_port}/ca"
    status, _, body = http_get(url)
    assert status == 200
    html = body.decode()
    fingerprint = hashlib.sha256(
        ssl.PEM_cert_to_DER_cert((page.state_dir / "local-ca" / "ca.pem").read_text())
    ).hexdigest().upper()
    assert ":".join(re.findall("..", fingerprint)) in html
    svg = re.search(r"<svg.*?</svg>", html, re.S).group(0)
    (tmp_path / "page-qr.svg").write_text(svg)
    assert zbarimg(tmp_path / "page-qr.svg") == url

    # The terminal: the URL line and the QR printed at start.
    log = page.log()
    printed = re.search(r"local CA install page: (\S+)", log).group(1)
    assert printed == url, log
    terminal_qr_to_pbm(log, tmp_path / "terminal-qr.pbm")
    assert zbarimg(tmp_path / "terminal-qr.pbm") == url
