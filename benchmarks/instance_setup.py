"""Instance set-up benchmark (not a test): concurrent first runs on fresh Dagster homes, with and without the
set-up lock of `autointerp_assets.defs.instance`; counts broken homes (a storage stamped with two migration
heads, after which every run fails) and the time per trial.

Each trial: a fresh ``$DAGSTER_HOME``, N processes forked at once (behind a barrier), each opening the
instance as a first run does: ``locked`` = ``instance.get()`` (what `autointerp run` does), ``bare`` =
``dagster.DagsterInstance.get()`` (what it did before).

    .venv/bin/python benchmarks/instance_setup.py [--trials 20] [--processes 4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def first_run(home: str, barrier, locked: bool) -> None:
    import logging

    import dagster as dg

    from autointerp_assets.defs import instance

    logging.disable(logging.WARNING)  # "no dagster.yaml" warnings, once per process
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # a losing process's traceback: counted below, not printed
    os.environ["DAGSTER_HOME"] = home
    barrier.wait()
    with (instance.get() if locked else dg.DagsterInstance.get()) as inst:
        inst.get_runs(limit=1)


def trials(n: int, processes: int, locked: bool) -> tuple[int, int, float]:
    """(broken homes, processes that failed, seconds per trial)."""
    from autointerp_assets.defs import instance

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["dagster", "autointerp_assets.defs.instance"])
    broken = failed = 0
    t0 = time.perf_counter()
    for _ in range(n):
        home = tempfile.mkdtemp(prefix="dagster-home-")
        barrier = ctx.Barrier(processes)
        procs = [ctx.Process(target=first_run, args=(home, barrier, locked)) for _ in range(processes)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
        failed += sum(p.exitcode != 0 for p in procs)
        broken += bool(instance.broken(home))
    return broken, failed, (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--processes", type=int, default=4)
    a = ap.parse_args()
    print(f"{a.trials} trials x {a.processes} concurrent first runs on a fresh DAGSTER_HOME", flush=True)
    for locked in (False, True):
        broken, failed, secs = trials(a.trials, a.processes, locked)
        label = "locked (instance.get)" if locked else "bare (DagsterInstance.get)"
        print(f"{label:28s} broken homes {broken:2d}/{a.trials}   failed processes {failed:3d}/{a.trials * a.processes}"
              f"   {secs:5.1f} s per trial", flush=True)


if __name__ == "__main__":
    main()
