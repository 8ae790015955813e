"""Start `dagster dev` on 127.0.0.1 for a test, in its own process group (like `set -m`), and stop all of it.

Dagster's daemons, code servers and run workers never leave the group (none of them calls setsid), so
signalling the group reaches every process the server started. Code servers may outlive the parent
for a while after SIGTERM (heartbeat timeout), so the stop waits for the whole group, not only the
parent, and SIGKILLs what is still there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``, from /proc."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(d.name))
    return pids


def stop_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the group, wait for every member (up to ``grace`` s), then SIGKILL the rest."""
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.time() + grace
    while time.time() < deadline:
        proc.poll()  # reap the parent so it stops counting
        if not group_members(pgid):
            break
        time.sleep(0.5)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    for _ in range(20):  # SIGKILL is immediate, but the kernel may take a moment to reap
        if not group_members(pgid):
            return
        time.sleep(0.25)
    raise AssertionError(f"processes of group {pgid} survived SIGKILL: {group_members(pgid)}")


@contextmanager
def dagster_dev(env: dict, log: Path | None = None):
    """Yields the port; on exit every process of the server's group is stopped (asserted)."""
    port = free_port()
    dagster = Path(sys.executable).with_name("dagster")
    out = open(log, "w") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen([str(dagster), "dev", "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1",
                                 "-p", str(port)], cwd=ROOT, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log:
            out.close()
    try:
        yield port
    finally:
        stop_group(proc)
