"""The state folder after a start that was killed while writing a key
(issue 10 item 7): keys are written to a temporary file next to the target
and renamed; a process killed in between leaves `.<file>.tmp-<pid>-...`
behind, holding a private key. The next start must remove such leftovers
of processes that are gone, whether it generates new files or reuses the
stored ones, and say so in its log.

The leftover is simulated: files named as a killed wssd would leave them,
with the pid of a process that has exited.
"""

from __future__ import annotations

import subprocess

FAKE_KEY = "-----BEGIN PRIVATE KEY-----\nleftover\n-----END PRIVATE KEY-----\n"


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def leave_temp_files(folder, pid: int) -> list:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = [
        folder / f".key.pem.tmp-{pid}-0",          # the naming before this fix
        folder / f".key.pem.tmp-{pid}-31337-0",    # pid, run id, counter
        folder / f".cert.pem.tmp-{pid}-31337-1",
    ]
    for f in files:
        f.write_text(FAKE_KEY)
        f.chmod(0o600)
    return files


def test_killed_first_start_leftovers_removed_on_next_start(wssd):
    # A first start killed before its renames: only temp files, no key yet.
    files = leave_temp_files(wssd.state_dir / "self-signed", dead_pid())
    wssd.start()
    left = [f.name for f in files if f.exists()]
    assert left == [], f"temporary key files left in the state folder: {left}"
    assert (wssd.state_dir / "self-signed" / "key.pem").is_file()
    assert "a temporary file left by a wssd that was stopped while writing" in wssd.log(), wssd.log_tail()
    names = sorted(p.name for p in (wssd.state_dir / "self-signed").iterdir())
    assert names == ["cert.pem", "key.pem"], names


def test_leftovers_removed_when_the_stored_pair_is_reused(wssd):
    wssd.start("--tls", "local-ca")
    assert wssd.stop() == 0
    leaf = wssd.state_dir / "local-ca" / "leaf"
    pid = dead_pid()
    files = leave_temp_files(leaf, pid) + leave_temp_files(wssd.state_dir / "local-ca", pid)
    wssd.proc = None
    wssd.start("--tls", "local-ca")
    left = [str(f.relative_to(wssd.state_dir)) for f in files if f.exists()]
    assert left == [], f"temporary key files left in the state folder: {left}"
