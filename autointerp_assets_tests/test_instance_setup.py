"""Concurrent first runs on a fresh Dagster home leave one healthy instance (each storage stamped exactly once).

Unlocked, Dagster's SQLite storages race on a fresh home (two migration heads; every later run fails):
`benchmarks/instance_setup.py` shows it (and the locked set-up's 0 broken homes over 20 trials). Here: 20
processes at once on each of 2 fresh homes, each setting the instance up as `autointerp run` does first
(`instance.prepare`; `make ui` runs the same before `dagster dev`).
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
from pathlib import Path

import dagster as dg

from autointerp_assets.defs import instance

PROCESSES, HOMES = 20, 2


def first_run(home: str, barrier) -> None:
    """What `autointerp run` (instance.get) and `make ui` do with a home before anything else."""
    barrier.wait()
    instance.prepare(home)


def test_twenty_concurrent_first_runs_leave_a_healthy_instance():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["dagster", "autointerp_assets.defs.instance", __name__])
    for trial in range(HOMES):
        home = tempfile.mkdtemp(prefix=f"dagster-home-{trial}-")
        barrier = ctx.Barrier(PROCESSES)
        procs = [ctx.Process(target=first_run, args=(home, barrier)) for _ in range(PROCESSES)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(180)
        assert [p.exitcode for p in procs] == [0] * PROCESSES, trial
        assert instance.broken(home) == [], trial
        assert all((Path(home) / s).exists() for s in instance.STORAGES), list(Path(home).rglob("*"))
        with dg.DagsterInstance.from_config(home) as inst:  # healthy: a run materializes and is recorded
            assert dg.materialize([probe], instance=inst).success
            assert inst.get_runs_count() == 1


@dg.asset
def probe() -> int:
    return 1
