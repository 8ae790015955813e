"""Scale-out benchmark (not a test): write throughput of a partition's replace into the DuckDB file vs a DuckLake
(catalog in a PostgreSQL started here on 127.0.0.1, Parquet under a temporary directory), alone and with several
writer processes at once.

Each write is ``Warehouse.replace_partition`` of one latent range of ``example_windows`` (the widest partitioned
table: 15 columns, 70 rows per latent as the offline default samples them) -- delete the range's rows, insert
the new ones, commit -- on a warehouse already holding ``--ranges`` such ranges. Printed: rows/s of one writer
(best of ``--repeat``), and the rows/s of ``--writers`` processes replacing their own ranges at once (the file:
taking turns on its lock; the lake: no lock, conflicting commits retried), the ratio lake / file, and the load
average before and after the one-writer part (a busy machine gives numbers, no headline).

    .venv/bin/python benchmarks/scale_out.py [--rows 70000] [--ranges 8] [--writers 2] [--repeat 5]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=70_000, help="rows per partition replace")
    ap.add_argument("--ranges", type=int, default=8, help="ranges the table holds beside the one replaced")
    ap.add_argument("--writers", type=int, default=2, help="writer processes at once")
    ap.add_argument("--writes", type=int, default=5, help="replaces per writer process")
    ap.add_argument("--repeat", type=int, default=5)
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


if __name__ == "__main__":
    main()
