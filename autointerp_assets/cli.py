"""`autointerp`: run the pipeline, print the per-partition summary, query the warehouse with SQL.

    autointerp run        materialize every asset and partition of the project config, then summarize
    autointerp summary    per-partition summary read from DuckDB
    autointerp sql "..."  run a SQL statement against the warehouse and print the result
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _print_frame(frame) -> None:
    import polars as pl

    with pl.Config(tbl_rows=200, tbl_cols=30, fmt_str_lengths=80, tbl_width_chars=200):
        print(frame)


QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def cmd_run(args) -> int:
    import warnings

    import dagster as dg

    # the CLI materializes partitions one by one; Dagster warns that the assets' backfill policies differ
    warnings.filterwarnings("ignore", message="Asset job .* materializes assets with varying BackfillPolicies")
    warnings.filterwarnings("ignore", category=dg.BetaWarning)

    from .core import pipeline
    from .core.config import load_config
    from .defs.assets import ALL, PARTITIONED_ASSETS, corpus_tokens, sparse_coders
    from .defs.partitions import PARTITIONS
    from .defs.resources import default_resources

    cfg = load_config()  # fail on bad config before anything heavy
    t0 = time.perf_counter()
    resources = default_resources()
    keys = PARTITIONS.get_partition_keys()
    with (dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()) as inst:
        def go(selection, partition_key=None):
            return dg.materialize(ALL, selection=selection, partition_key=partition_key, instance=inst,
                                  resources=resources, raise_on_error=True, run_config=QUIET)

        print(f"[autointerp] {len(keys)} partitions: {', '.join(keys)}", flush=True)
        go([corpus_tokens, sparse_coders])
        for i, key in enumerate(keys):
            print(f"[autointerp] partition {i + 1}/{len(keys)} {key} ({time.perf_counter() - t0:.0f}s)", flush=True)
            go(PARTITIONED_ASSETS, key)
    secs = time.perf_counter() - t0
    print(f"\n[autointerp] materialized {len(keys)} partitions in {secs / 60:.1f} min; summary from "
          f"{cfg.resolve(cfg.database)}:")
    _print_frame(pipeline.partition_summary(pipeline.Context.of(cfg)))
    return 0


def cmd_summary(args) -> int:
    from .core import pipeline
    from .core.config import load_config

    _print_frame(pipeline.partition_summary(pipeline.Context.of(load_config())))
    return 0


def cmd_sql(args) -> int:
    from .core.config import load_config
    from .core.storage import Warehouse

    cfg = load_config()
    _print_frame(Warehouse(cfg.resolve(cfg.database)).query(args.query))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="autointerp", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", help="project YAML (default: $AUTOINTERP_CONFIG or data/project.yaml)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="materialize everything, then print the summary")
    sub.add_parser("summary", help="per-partition summary from DuckDB")
    q = sub.add_parser("sql", help="run SQL against the warehouse")
    q.add_argument("query")
    args = p.parse_args(argv)
    if args.config:
        os.environ["AUTOINTERP_CONFIG"] = os.path.abspath(args.config)
    from .core.config import ConfigError

    try:
        return {"run": cmd_run, "summary": cmd_summary, "sql": cmd_sql}[args.cmd](args)
    except ConfigError as e:
        print(f"autointerp: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
