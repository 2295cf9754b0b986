"""The system calls a running wssd makes while a scenario runs, traced with
strace (test_writes.py, test_connect_syscalls.py). Skips the calling test,
saying why, where ptrace may not attach to another process."""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

needs_strace = pytest.mark.skipif(shutil.which("strace") is None,
                                  reason="needs strace (scripts/install-test-deps)")

LINE = re.compile(r"^(?:\d+\s+)?(\w+)\((\d+), .*\)\s+=\s+(-?\d+)(.*)$")


def traced_calls(pid, calls, scenario):
    """(call, fd, result, rest) of every one of `calls` (names) made by any
    thread of `pid` while scenario() runs, in order."""
    log = f"/tmp/wssd-strace-{os.getpid()}-{pid}.txt"
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=" + ",".join(calls), "-e", "signal=none",
         "-s", "0", "-o", log, "-p", str(pid)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # strace prints nothing when attached; wait until every thread is traced.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if tracer.poll() is not None:
                err = tracer.stderr.read().decode(errors="replace")
                if "Operation not permitted" in err:
                    pytest.skip(f"strace may not attach to another process here: {err.strip()}")
                pytest.fail(f"strace exited: {err.strip()}")
            tasks = os.listdir(f"/proc/{pid}/task")
            traced = [t for t in tasks if re.search(r"^TracerPid:\s+[1-9]",
                                                    open(f"/proc/{pid}/task/{t}/status").read(), re.M)]
            if len(traced) == len(tasks):
                break
            time.sleep(0.02)
        else:
            pytest.fail("strace did not attach (ptrace not permitted here?)")
        scenario()
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(10)
    found = []
    with open(log) as f:
        for line in f:
            m = LINE.match(line.strip())
            if m and m.group(1) in calls:
                found.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)))
    os.unlink(log)
    return found
