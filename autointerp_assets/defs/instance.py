"""The persistent Dagster instance (``$DAGSTER_HOME``), set up under a file lock.

Dagster's SQLite storages (``history/runs.db``, ``history/runs/index.db``, ``schedules/schedules.db``) create
their tables and stamp their migration revision the first time an instance opens a fresh home; two
processes doing that at once can both stamp, leaving two migration heads, and every later run fails
(`make run` beside `make ui`, two first runs, CI). :func:`prepare` opens the instance once under
``$DAGSTER_HOME/.autointerp-instance.lock``, so exactly one process creates the storages and the others
find them ready. `autointerp run` calls it before anything else; `make ui` runs this module before
``dagster dev``.

    python -m autointerp_assets.defs.instance      # prepare $DAGSTER_HOME (idempotent, safe concurrently)
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from filelock import FileLock

LOCK = ".autointerp-instance.lock"
READY = ".autointerp-instance-ready"  # written under the lock once every storage is created and stamped
STORAGES = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")  # a home without storage: config


def home() -> Path | None:
    h = os.environ.get("DAGSTER_HOME")
    return Path(h) if h else None


def prepare(dagster_home: str | os.PathLike | None = None) -> Path | None:
    """Create (or open) the instance's storages under the lock; returns the home (None: no DAGSTER_HOME)."""
    import dagster as dg

    h = Path(dagster_home) if dagster_home else home()
    if h is None:
        return None
    h.mkdir(parents=True, exist_ok=True)
    if (h / READY).exists() and not broken(h, everywhere=False):
        return h  # set up before (the common case: no lock to wait for)
    with FileLock(str(h / LOCK)):
        if not (h / READY).exists():
            with dg.DagsterInstance.from_config(str(h)) as inst:  # creates and stamps every storage once
                inst.get_runs(limit=1)
            (h / READY).write_text(f"dagster {dg.__version__}\n")
    return h


def get():
    """The persistent instance ($DAGSTER_HOME, prepared under the lock), or an ephemeral one without it."""
    import dagster as dg

    h = prepare()
    return dg.DagsterInstance.from_config(str(h)) if h is not None else dg.DagsterInstance.ephemeral()


def broken(dagster_home: str | os.PathLike, everywhere: bool = True) -> list[str]:
    """The SQLite storages of a home whose migration stamp is not exactly one revision (what a set-up race
    leaves: every later run fails on "more than one head"); ``everywhere=False``: the three shared ones only."""
    out = []
    home = Path(dagster_home)
    files = sorted(home.rglob("*.db")) if everywhere else [home / s for s in STORAGES]
    for p in files:
        rel = p.relative_to(home)
        if p.is_file():
            con = sqlite3.connect(str(p))
            try:
                n = con.execute("SELECT count(*) FROM alembic_version").fetchone()[0]
            except sqlite3.Error:
                n = 1  # not a migrated storage (or not stamped yet): nothing to judge
            finally:
                con.close()
            if n != 1:
                out.append(f"{rel}: {n} migration heads")
    return out


if __name__ == "__main__":
    where = prepare()
    print(f"dagster instance ready in {where}" if where else "DAGSTER_HOME is not set: nothing to prepare")
