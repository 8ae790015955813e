"""Start `dagster dev` on 127.0.0.1 for a test, in its own process group (like `set -m`), and stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dagster_dev(env: dict, log: Path | None = None):
    """Yields the port; the whole process tree gets SIGTERM (SIGKILL after 30 s) on exit."""
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
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
