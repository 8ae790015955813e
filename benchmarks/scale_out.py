"""Scale-out benchmark (not a test): write throughput of a partition's replace into the DuckDB file vs a DuckLake
(catalog in a PostgreSQL started here on 127.0.0.1, Parquet under a temporary directory), alone and with several
writer processes at once.

Each write is ``Warehouse.replace_partition`` of one latent range of ``example_windows`` (the widest partitioned
table: 15 columns, 70 rows per latent as the offline default samples them) -- delete the range's rows, insert
the new ones, commit -- on a warehouse already holding ``--ranges`` such ranges. Printed: rows/s of one writer
(best of ``--repeat``), and the rows/s of ``--writers`` processes replacing their own ranges at once (the file:
taking turns on its lock; the lake: no lock, conflicting commits retried), the ratio lake / file, and the load
average before and after the one-writer part (a busy machine gives numbers, no headline).

With ``--ray``, also partitions per hour of the tiny project's 4 partitions as one Dagster backfill through
dagster-ray's executor into a lake, on a Ray cluster of one node (the head) and of two (head + a second node as a
process of its own), 2 CPUs a node and a step, the LLM steps asking one shared vLLM server (float32), the daemon
starting the runs: the clock runs from the backfill's launch to its last run's end (upstream and calibration are
run before, unclocked). Ratio: two nodes / one.

    .venv/bin/python benchmarks/scale_out.py [--rows 70000] [--ranges 8] [--writers 2] [--repeat 5] [--ray]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from autointerp_assets.core.storage import Warehouse  # noqa: E402
from autointerp_assets.core.storage.lake import Lake  # noqa: E402
from autointerp_assets_tests.support.postgres import create_database, postgres_server  # noqa: E402
from autointerp_assets_tests.support import ray_backfill  # noqa: E402
from machine import describe, load, verdict  # noqa: E402

LATENTS = 1024  # per range
SPLITS = ("train", "test", "non_activating", "train_non_activating")


def windows(layer: str, first: int, rows: int, seed: int) -> pl.DataFrame:
    """``rows`` example windows of latents first..first+LATENTS-1, shaped like the sampler's."""
    rng = np.random.default_rng(seed)
    lat = np.sort(rng.integers(first, first + LATENTS, rows))
    return pl.DataFrame({
        "layer": layer, "latent": lat.astype(np.int32), "split": rng.choice(SPLITS, rows),
        "example_id": rng.integers(0, 4096, rows).astype(np.int32), "quantile": rng.integers(-1, 5, rows).astype(np.int16),
        "row_id": rng.integers(0, 512, rows).astype(np.int32), "start_pos": rng.integers(1, 225, rows).astype(np.int16),
        "length": np.full(rows, 32, dtype=np.int16), "max_activation": rng.random(rows).astype(np.float32),
        "source": None, "neighbour": None, "similarity": None, "sampler_fp": "sampler-bench",
        "corpus_fp": "corpus-bench", "activations_fp": "activations-bench"},
        schema_overrides={"source": pl.Utf8, "neighbour": pl.Int32, "similarity": pl.Float32})


def one_writer(wh: Warehouse, rows: int, ranges: int, repeat: int) -> float:
    for r in range(ranges):  # the warehouse holds the other ranges already
        wh.replace_partition("layers.6", r * LATENTS, (r + 1) * LATENTS - 1,
                             {"example_windows": windows("layers.6", r * LATENTS, rows, r)})
    frame = windows("layers.6", 0, rows, 99)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        wh.replace_partition("layers.6", 0, LATENTS - 1, {"example_windows": frame})
        best = min(best, time.perf_counter() - t0)
    return rows / best


WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
    from scale_out import windows, LATENTS
    from autointerp_assets.core.storage import Warehouse
    from autointerp_assets.core.storage.lake import Lake
    lake = Lake(*{lake!r}) if {lake!r} else None
    wh = Warehouse({db!r}, lake=lake)
    r, rows, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    frame = windows("layers.6", r * LATENTS, rows, r)
    wh.scalar("SELECT 1")  # connected before the clock starts
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(n):
        wh.replace_partition("layers.6", r * LATENTS, (r + 1) * LATENTS - 1, {{"example_windows": frame}})
""")


def many_writers(db: Path, lake: Lake | None, rows: int, writers: int, writes: int) -> float:
    code = WRITER.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), db=str(db),
                         lake=(lake.catalog, lake.data_path) if lake else None)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w), str(rows), str(writes)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for w in range(writers)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.wait()
        assert p.returncode == 0, "a writer failed"
    return writers * writes * rows / (time.perf_counter() - t0)


def partitions_per_hour(pg: dict, llm_url: str, out: Path, nodes: int) -> tuple[float, int]:
    """(partitions/hour of one backfill of the tiny project on ``nodes`` Ray nodes, its partitions)."""
    import os

    import dagster as dg

    from autointerp_assets_tests.support.ray_cluster import ray_cluster

    env, _ = ray_backfill.cluster_project(out, pg, llm_url, f"nodes{nodes}")
    with ray_cluster(workers=nodes - 1, cpus_per_node=2, env=env) as cluster:
        ray_backfill.use_cluster(env, cluster.dashboard, step_cpus=2)
        os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "DAGSTER_PG_URL")})
        with ray_backfill.daemon(env, out / "daemon.log"):
            ray_backfill.upstream(env)
            t0 = time.perf_counter()
            backfill_id, keys = ray_backfill.launch_backfill(env)
            with dg.DagsterInstance.get() as instance:
                runs = ray_backfill.wait_for_backfill(instance, backfill_id, len(keys))
            secs = time.perf_counter() - t0
    bad = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
    assert not bad, f"runs failed: {bad} (see {out / 'daemon.log'})"
    return len(keys) / (secs / 3600), len(keys)


def ray_part() -> None:
    from autointerp_assets_tests.support.llm_server import vllm_server

    with tempfile.TemporaryDirectory() as d, postgres_server() as pg, \
            vllm_server("float32", prefix_caching=False) as llm_url:
        before = load()
        one, n = partitions_per_hour(pg, llm_url, Path(d) / "one", 1)
        two, _ = partitions_per_hour(pg, llm_url, Path(d) / "two", 2)
        _, line = verdict(before, load())
    print(f"one backfill of {n} partitions through the Ray executor into a lake (2 CPUs a node and a step):")
    print(f"  1 Ray node : {one:8.1f} partitions/hour")
    print(f"  2 Ray nodes: {two:8.1f} partitions/hour   2 nodes / 1 node {two / one:.2f}x")
    print(line)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=70_000, help="rows per partition replace")
    ap.add_argument("--ranges", type=int, default=8, help="ranges the table holds beside the one replaced")
    ap.add_argument("--writers", type=int, default=2, help="writer processes at once")
    ap.add_argument("--writes", type=int, default=5, help="replaces per writer process")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ray", action="store_true", help="also partitions/hour on 1 vs 2 Ray nodes (~15 min)")
    args = ap.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as d, postgres_server() as pg:
        lake = Lake(create_database(pg, "bench_lake"), str(Path(d) / "lake") + "/")
        before = load()
        file_rs = one_writer(Warehouse(Path(d) / "bench.duckdb"), args.rows, args.ranges, args.repeat)
        lake_rs = one_writer(Warehouse(Path(d) / "unused.duckdb", lake=lake), args.rows, args.ranges, args.repeat)
        quiet, line = verdict(before, load())  # (the writer processes below load every core themselves)
        file_many = many_writers(Path(d) / "bench.duckdb", None, args.rows, args.writers, args.writes)
        lake_many = many_writers(Path(d) / "unused.duckdb", lake, args.rows, args.writers, args.writes)
    print(f"partition replace of {args.rows:,} example_windows rows ({args.ranges} other ranges in the table):")
    print(f"  one writer      : DuckDB file {file_rs:12,.0f} rows/s   lake {lake_rs:12,.0f} rows/s   "
          f"lake / file {lake_rs / file_rs:.2f}x")
    print(f"  {args.writers} writers at once: DuckDB file {file_many:12,.0f} rows/s   lake {lake_many:12,.0f} rows/s   "
          f"lake / file {lake_many / file_many:.2f}x  ({args.writes} replaces each)")
    print(line + " (before and after the one-writer measurements)")
    if args.ray:
        ray_part()


if __name__ == "__main__":
    main()
