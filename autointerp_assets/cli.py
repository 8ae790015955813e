"""`autointerp`: run the pipeline, print the per-partition summary, query the warehouse with SQL.

    autointerp run        materialize every asset and partition of the project config, then summarize
    autointerp summary    per-partition summary read from DuckDB
    autointerp sql "..."  run a SQL statement against the warehouse and print the result
    autointerp snapshot   copy the warehouse for a long SQL session (runs keep writing the original)
    autointerp explainers list the explainer registry (names, fingerprints, which one is active)
    autointerp latent LAYER N          one latent's card (explanations, scores vs control, examples)
    autointerp browse                  serve the latent browser on 127.0.0.1
    autointerp search "..."            latents ranked by their explanation's meaning
    autointerp export DIR --to parquet|neuronpedia|delphi
    autointerp estimate                LLM requests, tokens and dollars per stage before a run (nothing sent)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import cli_latents
from .core.display import FORMATS


def _print_frame(frame, fmt: str = "table") -> None:
    from .core.display import render

    print(render(frame, fmt))


QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def cmd_run(args) -> int:
    import warnings

    import dagster as dg

    # the CLI materializes partitions one by one; Dagster warns that the assets' backfill policies differ
    warnings.filterwarnings("ignore", message="Asset job .* materializes assets with varying BackfillPolicies")
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)  # partitioned asset checks

    from .core import pipeline
    from .core.config import load_config
    from .defs.assets import ALL
    from .defs.checks import CHECKS
    from .defs.jobs import JOBS, analyses_job, calibrate, corpus_and_sparse_coders, latent_range_pipeline
    from .defs.partitions import PARTITIONS
    from .defs.resources import default_resources

    cfg = load_config()  # fail on bad config before anything heavy
    t0 = time.perf_counter()
    defs = dg.Definitions(assets=ALL, asset_checks=CHECKS, jobs=JOBS, resources=default_resources())
    keys = PARTITIONS.get_partition_keys()
    with (dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()) as inst:
        def go(job, partition_key=None):  # named jobs: each run says what ran
            return defs.resolve_job_def(job.name).execute_in_process(
                partition_key=partition_key, instance=inst, raise_on_error=True, run_config=QUIET)

        print(f"[autointerp] {len(keys)} partitions: {', '.join(keys)}", flush=True)
        go(corpus_and_sparse_coders)
        go(calibrate)  # what this explainer + scorer setup can see, before the costly part
        for i, key in enumerate(keys):
            print(f"[autointerp] partition {i + 1}/{len(keys)} {key} ({time.perf_counter() - t0:.0f}s)", flush=True)
            go(latent_range_pipeline, key)
        go(analyses_job)  # scorer agreement and SAE similarity over every partition
    secs = time.perf_counter() - t0
    print(f"\n[autointerp] materialized {len(keys)} partitions in {secs / 60:.1f} min; latent browser in "
          f"{cfg.browser_dir} (serve it: autointerp browse); summary from {cfg.resolve(cfg.database)}:")
    _print_frame(pipeline.partition_summary(pipeline.Context.of(cfg)))
    _print_findings(pipeline.Context.of(cfg))
    return 0


def _print_findings(ctx) -> None:
    """What the measurements can be trusted for: does each scorer read the explanation; the calibration."""
    from .core import pipeline

    for title, lines in (("Does each scorer read the explanation? (share of answers that change with another "
                          "latent's explanation)", pipeline.findings_lines(ctx)),
                         ("Calibration on planted latents of known meaning (what this explainer + scorer setup can see)",
                          pipeline.calibration_lines(ctx))):
        if lines:
            print(f"\n{title}")
            for line in lines:
                print(f"  {line}")


def cmd_summary(args) -> int:
    from .core import pipeline
    from .core.config import load_config

    ctx = pipeline.Context.of(load_config())
    _print_frame(pipeline.partition_summary(ctx), args.format)
    _print_findings(ctx)
    return 0


def cmd_sql(args) -> int:
    import duckdb

    from .core.config import load_config
    from .core.storage import Warehouse

    cfg = load_config()
    try:
        _print_frame(Warehouse(cfg.resolve(cfg.database)).query(args.query), args.format)
    except duckdb.Error as e:
        print(f"autointerp sql: {str(e).splitlines()[0]} (tables and views: README 'Tables' and 'SQL'; "
              f"list them with: autointerp sql \"show tables\")", file=sys.stderr)
        return 1
    return 0


def cmd_snapshot(args) -> int:
    from .core.config import load_config
    from .core.storage import Warehouse

    cfg = load_config()
    db = cfg.resolve(cfg.database)
    dest = Warehouse(db).snapshot(args.path or db.with_name(db.stem + ".snapshot.duckdb"))
    print(f"snapshot of {db} written to {dest}: open it with any DuckDB client for as long as you like "
          f"(runs keep writing {db.name})")
    return 0


def cmd_explainers(args) -> int:
    import polars as pl

    from .core.config import config_path, load_config
    from .core.registry import explainer_fp, load_registry, registry_path

    cfg = load_config()
    path = registry_path(os.environ.get("AUTOINTERP_CONFIG") or config_path())
    reg = load_registry(cfg, path)
    rows = [{"explainer": name, "active": name == reg.active_explainer,
             "explainer_fp": explainer_fp(reg.apply(cfg, name)), "model": e.llm.model, "engine": e.llm.engine}
            for name, e in reg.explainers.items()]
    print(f"registry: {reg.path or f'{path} (absent: the project config explainer is active)'}")
    _print_frame(pl.DataFrame(rows))
    return 0


def cmd_estimate(args) -> int:
    import tempfile
    from pathlib import Path

    import polars as pl

    from .core.config import PriceConfig
    from .core.estimate import estimate
    from .core.registry import active_config
    from .core.stages.context import Context
    from .core.storage import Warehouse

    cfg = active_config()
    if args.price:
        try:
            prompt, completion = (float(v) for v in args.price.split(","))
            price = PriceConfig(prompt=prompt, cached=prompt, completion=completion)
        except ValueError:
            print("autointerp estimate: --price takes PROMPT,COMPLETION in $ per 1M tokens, e.g. --price 0.6,0.6",
                  file=sys.stderr)
            return 2
        cfg = cfg.model_copy(update={
            "explainer": cfg.explainer.model_copy(update={"llm": cfg.explainer.llm.model_copy(update={"price": price})}),
            "scorer": cfg.scorer.model_copy(update={"llm": cfg.scorer_llm.model_copy(update={"price": price})})})
    db = cfg.resolve(cfg.database)
    with tempfile.TemporaryDirectory() as tmp:  # no warehouse yet: estimate from the config alone, create none
        wh = Warehouse(db if db.exists() else Path(tmp) / "empty.duckdb")
        frame = estimate(Context(cfg, wh), sample=args.sample)
        sampled = bool(wh.scalar("SELECT count(*) FROM latent_selection"))
    total = frame.select(pl.lit("total").alias("stage"), pl.lit("").alias("explainer"), pl.lit("").alias("scorer"),
                         pl.lit(None, pl.Int64).alias("latents"), pl.sum("requests"), pl.sum("prompt_tokens"),
                         pl.sum("completion_tokens"), pl.sum("cost_usd"))
    _print_frame(pl.concat([frame, total]).rename({"prompt_tokens": "prompt tok", "completion_tokens": "compl. tok",
                                                    "cost_usd": "$"}))
    where = "the stored examples" if sampled else "the config and corpus windows (nothing sampled yet)"
    print(f"estimated from {where}; nothing was sent. Explanations' completions are counted at max_tokens and no "
          f"prompt as cached (upper bounds); prices from each engine's price table.")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="autointerp", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", help="project YAML (default: $AUTOINTERP_CONFIG or data/project.yaml)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="materialize everything, then print the summary")
    fmt = dict(choices=FORMATS, default="table", help="table (fits 100 columns), csv, json or markdown")
    sub.add_parser("summary", help="per-partition summary from DuckDB").add_argument("--format", **fmt)
    q = sub.add_parser("sql", help="run SQL against the warehouse (a short read between writes)")
    q.add_argument("query")
    q.add_argument("--format", **fmt)
    snap = sub.add_parser("snapshot", help="copy the warehouse consistently, for long analyst sessions")
    snap.add_argument("path", nargs="?", help="destination (default: <database>.snapshot.duckdb)")
    sub.add_parser("explainers", help="the explainer registry: names, fingerprints, the active one")
    cli_latents.add_parsers(sub)
    est = sub.add_parser("estimate", help="LLM requests, tokens and $ per stage before a run (nothing is sent)")
    est.add_argument("--sample", type=int, default=8, help="latents per partition whose requests are built (default 8)")
    est.add_argument("--price", help="PROMPT,COMPLETION $ per 1M tokens for every engine (default: the config's)")
    args = p.parse_args(argv)
    if args.config:
        os.environ["AUTOINTERP_CONFIG"] = os.path.abspath(args.config)
    from .core.config import ConfigError

    try:
        if args.cmd in cli_latents.COMMANDS:
            return cli_latents.run(args)
        return {"run": cmd_run, "summary": cmd_summary, "sql": cmd_sql, "snapshot": cmd_snapshot,
                "explainers": cmd_explainers, "estimate": cmd_estimate}[args.cmd](args)
    except ConfigError as e:
        print(f"autointerp: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
