"""README.md stays true (issue 13, item 5): `cargo install --path .` comes
before the first `wssd` command of its shell blocks, and its sample
`wssd.toml` (the first ```toml block) passes `wssd check` in a folder holding
the files it names."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from conftest import REPO_ROOT, wssd_bin

README = REPO_ROOT / "README.md"


def blocks(kind: str) -> list[tuple[int, str]]:
    """(offset, text) of every fenced block of KIND in README.md."""
    text = README.read_text()
    return [(m.start(), m.group(1)) for m in re.finditer(rf"^```{kind}\n(.*?)^```", text, re.M | re.S)]


def test_install_comes_before_the_first_wssd_command():
    text = README.read_text()
    install = text.find("cargo install --path .")
    assert install >= 0, "README.md does not say `cargo install --path .`"
    first = None
    for offset, block in blocks("sh"):
        for line in block.splitlines():
            if re.match(r"^(sudo )?wssd\b", line.strip()):
                first = offset + block.find(line)
                break
        if first is not None:
            break
    assert first is not None, "no `wssd` command in README.md's sh blocks"
    assert install < first, "the first `wssd` command comes before `cargo install --path .`"


def self_signed(folder: Path, stem: str, key: str, names: list[str]):
    sans = ",".join(f"DNS:{n}" for n in names)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "30", "-subj", f"/CN={names[0]}", "-addext",
                    f"subjectAltName={sans}", "-keyout", str(folder / key), "-out",
                    str(folder / stem)], check=True, capture_output=True, timeout=30)


def test_sample_config_passes_check(tmp_path):
    samples = blocks("toml")
    assert samples, "no toml block in README.md"
    config = tmp_path / "wssd.toml"
    config.write_text(samples[0][1])
    # The files the sample names, as a user would have them.
    self_signed(tmp_path, "fullchain.pem", "privkey.pem", ["localhost"])
    self_signed(tmp_path, "other.example.pem", "other.example.key",
                ["other.example", "*.other.example"])
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("<!doctype html><title>x</title>\n")
    (tmp_path / "bin").mkdir()
    handler = tmp_path / "bin" / "handler"
    handler.write_text("#!/bin/sh\nexec cat\n")
    handler.chmod(0o755)
    (tmp_path / "tokens.txt").write_text("alice:" + os.urandom(24).hex() + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSSD_")}
    env["WSSD_MOD_PASSWORD"] = "sample-moderator-password"
    # Its listeners moved to free ports: check binds them.
    result = subprocess.run([str(wssd_bin()), "check", "--config", str(config),
                             "--state-dir", str(tmp_path / "state"),
                             "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                             "--admin", "127.0.0.1:0"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"wssd check on README.md's sample:\n{result.stdout}{result.stderr}"
    assert "ok: configuration" in result.stdout, result.stdout


def test_docs_show_the_device_console_config_the_example_tests():
    """The device console `wssd.toml` shown in docs/migrating.md and in the
    example's README is the one examples/device-console/test.sh runs
    (comments aside)."""
    example = (REPO_ROOT / "examples" / "device-console" / "wssd.toml").read_text()
    strip = lambda t: [line for line in t.splitlines() if line.strip() and not line.startswith("#")]
    for doc in (REPO_ROOT / "docs" / "migrating.md", REPO_ROOT / "examples" / "device-console" / "README.md"):
        shown = [b for b in re.findall(r"^```toml\n(.*?)^```", doc.read_text(), re.M | re.S)
                 if "/console" in b]
        assert len(shown) == 1, f"no single device console toml block in {doc.name}"
        assert strip(shown[0]) == strip(example), f"{doc.name} shows another config"
