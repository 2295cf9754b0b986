"""Install and packages: --version, the startup banner, shell completions, the
man page, examples/wssd.toml passing `wssd check`, and the Debian package
(built with cargo-deb by scripts/package-deb, extracted into a temporary root,
whose binary runs --version and check on the packaged example).

The .deb test needs cargo-deb and a release build; it is skipped with a notice
when cargo-deb is absent or WSSD_PACKAGE_TEST=1 is not set (scripts/test's
"package" step sets it, after the Autobahn steps built the release binary);
WSSD_DEB=FILE checks a .deb built already instead.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, wssd_bin

EXAMPLE = REPO_ROOT / "examples" / "wssd.toml"


def cargo_version() -> str:
    text = (REPO_ROOT / "Cargo.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', text, re.M)
    assert match, "no version in Cargo.toml"
    return match.group(1)


def wssd(*args: str, binary: Path | None = None, timeout: float = 30, **kwargs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSD_")}
    return subprocess.run([str(binary or wssd_bin()), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL, **kwargs)


def check_example(config: Path, tmp_path: Path, binary: Path | None = None):
    """`wssd check` on CONFIG with its listeners moved to free ports (check
    binds them) and a temporary state folder."""
    return wssd("check", "--config", str(config), "--state-dir", str(tmp_path / "state"),
                "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                binary=binary, cwd=tmp_path)


def test_version():
    result = wssd("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wssd {cargo_version()}"


def test_banner_names_the_version(wssd):
    srv = wssd.start()
    assert f"wssd {cargo_version()} starting (pid {srv.proc.pid})" in srv.log()


@pytest.mark.parametrize("shell,check", [("bash", ["bash", "-n"]), ("zsh", ["zsh", "-n"]),
                                         ("fish", ["fish", "--no-execute"])])
def test_completions(shell, check, tmp_path):
    result = wssd("completions", shell)
    assert result.returncode == 0, result.stderr
    script = result.stdout
    # Every subcommand and a serve option are completed.
    for word in ["serve", "check", "cert", "bench", "completions", "listen", "max-connections"]:
        assert word in script, f"{shell} completions lack {word}"
    if shutil.which(check[0]):
        path = tmp_path / f"wssd.{shell}"
        path.write_text(script)
        syntax = subprocess.run([*check, str(path)], capture_output=True, text=True, timeout=30)
        assert syntax.returncode == 0, f"{shell} rejects the script: {syntax.stderr}"


def test_completions_for_an_unknown_shell_is_an_error():
    result = wssd("completions", "tcsh")
    assert result.returncode == 2
    assert "invalid value 'tcsh'" in result.stderr and "bash" in result.stderr, result.stderr


def test_man_page():
    result = wssd("man")
    assert result.returncode == 0, result.stderr
    page = result.stdout
    assert page.startswith(".ie") or page.startswith(".TH"), page[:200]
    assert ".TH wssd 1" in page
    for word in ["completions", "check", "\\-\\-listen", "WSSD_LISTEN"]:
        assert word in page, f"the man page lacks {word}"
    # Hidden from --help: it is for packagers.
    assert " man " not in wssd("--help").stdout


def test_example_config_passes_check(tmp_path):
    result = check_example(EXAMPLE, tmp_path)
    assert result.returncode == 0, f"wssd check on examples/wssd.toml:\n{result.stdout}{result.stderr}"
    assert "ok: configuration" in result.stdout
    assert "6 route(s)" in result.stdout, result.stdout


# -- the Debian package ---------------------------------------------------------

def have_cargo_deb() -> bool:
    try:
        return subprocess.run(["cargo", "deb", "--version"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


EXPECTED_FILES = [
    "./usr/bin/wssd",
    "./usr/share/man/man1/wssd.1.gz",
    "./usr/share/bash-completion/completions/wssd",
    "./usr/share/zsh/vendor-completions/_wssd",
    "./usr/share/fish/vendor_completions.d/wssd.fish",
    "./usr/lib/systemd/system/wssd.service",
    "./usr/lib/systemd/system/wssd.socket",
    "./usr/lib/systemd/system/wssd-http.socket",
    "./usr/share/doc/wssd/README.md",
    "./usr/share/doc/wssd/examples/wssd.toml",
]


def build_deb() -> Path:
    """scripts/package-deb's .deb, or the one WSSD_DEB names (built already)."""
    given = os.environ.get("WSSD_DEB")
    if given:
        return Path(given)
    built = subprocess.run([str(REPO_ROOT / "scripts" / "package-deb")], capture_output=True,
                           text=True, timeout=1800, cwd=REPO_ROOT)
    assert built.returncode == 0, f"scripts/package-deb failed:\n{built.stdout}\n{built.stderr}"
    return Path(built.stdout.strip().splitlines()[-1])


def test_deb_installs_into_a_root_and_runs(tmp_path):
    if not os.environ.get("WSSD_DEB"):
        if not have_cargo_deb():
            pytest.skip("cargo-deb is not installed (cargo install cargo-deb --locked); "
                        "the .deb is built and checked in scripts/test's package step")
        if os.environ.get("WSSD_PACKAGE_TEST") != "1":
            pytest.skip("needs a release build: set WSSD_PACKAGE_TEST=1 "
                        "(scripts/test's package step does, after the Autobahn steps built it)")
    deb = build_deb()
    assert deb.is_file() and deb.suffix == ".deb", deb

    info = subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^ Package: wssd$", info, re.M), info
    assert re.search(rf"^ Version: {re.escape(cargo_version())}(-\d+)?$", info, re.M), info
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    files = {line.split()[-1] for line in listing.splitlines()}
    missing = [f for f in EXPECTED_FILES if f not in files]
    assert not missing, f"the .deb lacks {missing}\n{listing}"

    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    binary = root / "usr" / "bin" / "wssd"
    version = wssd("--version", binary=binary)
    assert version.returncode == 0 and version.stdout.strip() == f"wssd {cargo_version()}", version
    checked = check_example(root / "usr/share/doc/wssd/examples/wssd.toml", tmp_path, binary=binary)
    assert checked.returncode == 0, f"packaged wssd check:\n{checked.stdout}{checked.stderr}"
    page = gzip.decompress((root / "usr/share/man/man1/wssd.1.gz").read_bytes()).decode()
    assert ".TH wssd 1" in page
    service = (root / "usr/lib/systemd/system/wssd.service").read_text()
    assert "ExecStart=/usr/bin/wssd serve" in service
