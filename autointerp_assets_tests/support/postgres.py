"""A throwaway PostgreSQL server for the tests: Debian's binaries (``make postgres`` installs them), a fresh data
directory, 127.0.0.1 on a free port, trust authentication for local connections only; stopped and deleted after.

Importable without pytest (``benchmarks/scale_out.py`` starts one the same way).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .dagster_dev import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: run `make postgres` (Debian's postgresql package)")
    return path


def _as_server_user(cmd: list[str]) -> list[str]:
    """initdb and the server refuse to run as root: as root, they run as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server() -> Iterator[dict]:
    """A running server: yields {'host', 'port', 'user', 'conninfo': libpq string of database 'postgres'}."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    base = Path(tempfile.mkdtemp(prefix="autointerp-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    data, port = base / "data", free_port()
    try:
        subprocess.run(_as_server_user([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]),
                       check=True, capture_output=True, text=True)
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c max_connections=200"
        subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w",
                                        "start"]), check=True, capture_output=True, text=True)
        info = {"host": "127.0.0.1", "port": port, "user": "postgres",
                "conninfo": f"host=127.0.0.1 port={port} user=postgres dbname=postgres"}
        try:
            yield info
        finally:
            subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True)
    except subprocess.CalledProcessError as e:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr.strip()[-400:]} {log[-400:]}") from None
    finally:
        shutil.rmtree(base, ignore_errors=True)


def create_database(info: dict, name: str) -> str:
    """A new database on the server; its libpq connection string."""
    import psycopg2

    con = psycopg2.connect(host=info["host"], port=info["port"], user=info["user"], dbname="postgres")
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        con.close()
    return f"dbname={name} host={info['host']} port={info['port']} user={info['user']}"
