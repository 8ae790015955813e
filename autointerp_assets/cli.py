"""`autointerp`: run the pipeline, print the per-partition summary, query the warehouse with SQL.

    autointerp run        materialize every asset and partition of the project config, then summarize
                          (LLM stages send only what is missing or failed; --force re-sends everything;
                          exit status 1 when a partition failed, 2 for bad input found before any work)
    autointerp summary    per-partition summary read from DuckDB
    autointerp sql "..."  run a read-only SQL query against the warehouse and print the result
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
import textwrap
import time

from . import cli_latents
from .core.display import FORMATS


def _print_frame(frame, fmt: str = "table") -> None:
    from .core.display import render

    print(render(frame, fmt))


def cmd_run(args) -> int:
    import warnings

    import dagster as dg

    # the CLI materializes partitions one by one; Dagster warns that the assets' backfill policies differ
    warnings.filterwarnings("ignore", message="Asset job .* materializes assets with varying BackfillPolicies")
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)  # partitioned asset checks

    from .core import preflight, stages
    from .core.config import load_config
    from .defs import instance, run_report
    from .defs.assets import ALL, PARTITIONED_ASSETS
    from .defs.assets.explanations import FORCE_TAG
    from .defs.checks import CHECKS
    from .defs.jobs import JOBS, analyses_job, calibrate, corpus_and_sparse_coders, latent_range_pipeline
    from .defs.partitions import PARTITIONS
    from .defs.resources import default_resources

    cfg = load_config()  # fail on bad config before anything heavy
    preflight.check(cfg)  # files, corpus, models, LLM servers: one line each, before anything heavy
    db = cfg.resolve(cfg.database)
    if cfg.lake is not None:
        print(f"[autointerp] warehouse: the lake with catalog '{cfg.lake.catalog}' and data in {cfg.lake.data_path}",
              flush=True)
    elif not db.exists():
        print(f"[autointerp] creating the warehouse {db}", flush=True)
    t0 = time.perf_counter()
    upstream, partition_job, jobs = corpus_and_sparse_coders, latent_range_pipeline, list(JOBS)
    if args.start:  # --from: this asset and those after it
        names = [a.key.path[-1] for a in ALL]
        after = [a for a in ALL if names.index(a.key.path[-1]) >= names.index(args.start)]
        upstream = None if args.start in [a.key.path[-1] for a in PARTITIONED_ASSETS] else \
            dg.define_asset_job(f"from_{args.start}", selection=[a for a in after if a not in PARTITIONED_ASSETS])
        partition_job = dg.define_asset_job(f"latent_range_from_{args.start}",
                                            selection=[a for a in PARTITIONED_ASSETS if a in after])
        jobs += [j for j in (upstream, partition_job) if j is not None]
    defs = dg.Definitions(assets=ALL, asset_checks=CHECKS, jobs=jobs, resources=default_resources(),
                          loggers={"console": run_report.one_line_console})
    tags = {FORCE_TAG: "true"} if args.force else {}
    keys = [k for k in PARTITIONS.get_partition_keys()
            if (not args.layer or k.keys_by_dimension["layer"] in args.layer)
            and (not args.latents or k.keys_by_dimension["latents"] in args.latents)]
    if not keys:
        print(f"autointerp: no partition matches --layer {args.layer or 'any'} --latents {args.latents or 'any'} "
              f"(layers {cfg.layer_keys()}, latent ranges {cfg.latent_keys()})", file=sys.stderr)
        return 2
    failed: dict[str, list[tuple[str, str]]] = {}
    with instance.get() as inst:
        def go(job, partition_key=None) -> list[tuple[str, str]]:  # named jobs: each run says what ran
            res = defs.resolve_job_def(job.name).execute_in_process(
                partition_key=partition_key, instance=inst, raise_on_error=False, tags=tags,
                run_config=run_report.LOGGERS_CONFIG)
            return run_report.failures(res) or ([] if res.success else [("run", "failed (see the Dagster log)")])

        print(f"[autointerp] {len(keys)} partitions: {', '.join(keys)}", flush=True)
        for step, line in go(upstream) if upstream is not None else []:
            print(f"autointerp: {step}: {line}", file=sys.stderr)
            failed["upstream"] = [(step, line)]
        if failed:
            return 1
        if upstream is corpus_and_sparse_coders:  # what this explainer + scorer setup can see, before the costly part
            for step, line in go(calibrate):
                print(f"autointerp: {step}: {line}", file=sys.stderr)
                failed["calibration"] = [(step, line)]
            if failed:
                return 1
        for i, key in enumerate(keys):
            print(f"[autointerp] partition {i + 1}/{len(keys)} {key} ({time.perf_counter() - t0:.0f}s)", flush=True)
            bad = go(partition_job, key)
            if bad:
                failed[key] = bad
                for step, line in bad:
                    print(f"[autointerp] partition {key} failed: {step}: {line}", flush=True)
        for step, line in go(analyses_job):  # scorer agreement and SAE similarity over every partition
            print(f"[autointerp] analyses failed: {step}: {line}", flush=True)
            failed.setdefault("analyses", []).append((step, line))
    secs = time.perf_counter() - t0
    n_bad = sum(k in failed for k in keys)
    print(f"\n[autointerp] materialized {len(keys) - n_bad} of {len(keys)} partitions in {secs / 60:.1f} min; "
          f"latent browser in {cfg.browser_dir} (serve it: autointerp browse); summary from {db}:")
    ctx = stages.Context.of(cfg)
    _print_frame(stages.partition_summary(ctx, _current_fp()))
    _print_findings(ctx)
    if failed:
        print(f"\n[autointerp] {n_bad} of {len(keys)} partitions FAILED (their good rows are kept; re-run "
              "`autointerp run` to send only what is missing or failed):", file=sys.stderr)
        for key, bad in failed.items():
            for step, line in bad:
                print(f"  {key} {step}: {line}", file=sys.stderr)
        return 1
    return 0


def _current_fp() -> str:
    """The fingerprint of the explainer the assets use (the registry's active one)."""
    from .core.identity import explainer_fp
    from .core.registry import active_config

    return explainer_fp(active_config())


def _existing(cfg):
    """The warehouse of a command that only reads: it must exist (a mistyped path is not silently created)."""
    from .core.errors import StorageError
    from .core.storage import Warehouse
    from .core.storage.sql_door import missing

    wh = Warehouse.of(cfg)
    if not wh.exists():
        raise StorageError(missing(wh, f"`database:` in {_config_name()}"))
    return wh


def _config_name() -> str:
    from .core.config import config_path

    return str(config_path())


def _print_findings(ctx) -> None:
    """What the measurements can be trusted for: does each scorer read the explanation; the calibration."""
    from .core import stages

    for title, lines in (("Does each scorer read the explanation? (share of answers that change with another "
                          "latent's explanation)", stages.findings_lines(ctx)),
                         ("Calibration on planted latents of known meaning (what this explainer + scorer setup can see)",
                          stages.calibration_lines(ctx))):
        if lines:
            print()
            print(textwrap.fill(title, 100))
            for line in lines:  # wrapped to fit a 100-column terminal
                print(textwrap.fill(line, 100, initial_indent="  ", subsequent_indent="    "))


def cmd_summary(args) -> int:
    from .core import stages
    from .core.config import load_config

    cfg = load_config()
    _existing(cfg)
    ctx = stages.Context.of(cfg)
    _print_frame(stages.partition_summary(ctx, _current_fp()), args.format)
    _print_findings(ctx)
    return 0


def cmd_sql(args) -> int:
    import duckdb

    from .core.config import load_config
    from .core.storage.sql_door import Refused, read_only_query

    cfg = load_config()
    wh = _existing(cfg)
    try:
        _print_frame(read_only_query(wh, args.query), args.format)
    except Refused as e:
        print(f"autointerp sql: {e}", file=sys.stderr)
        return 1
    except duckdb.Error as e:
        print(f"autointerp sql: {str(e).splitlines()[0]} (tables and views: docs/tables.md and docs/sql.md; "
              f"list them with: autointerp sql \"show tables\")", file=sys.stderr)
        return 1
    return 0


def cmd_snapshot(args) -> int:
    from .core.config import load_config

    cfg = load_config()
    wh = _existing(cfg)
    db = wh.path
    dest = wh.snapshot(args.path or db.with_name(db.stem + ".snapshot.duckdb"))
    print(f"snapshot of {db} written to {dest}: open it with any DuckDB client for as long as you like "
          f"(runs keep writing {db.name})")
    return 0


def cmd_explainers(args) -> int:
    import polars as pl

    from .core.config import config_path, load_config
    from .core.identity import explainer_fp
    from .core.registry import load_registry, registry_path

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
    from .core.registry import active_config
    from .core.stages.context import Context
    from .core.stages.estimate import estimate
    from .core.storage import Warehouse, queries

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
        wh = Warehouse.of(cfg) if cfg.lake or db.exists() else Warehouse(Path(tmp) / "empty.duckdb")
        frame = estimate(Context(cfg, wh), sample=args.sample)
        sampled = bool(wh.scalar(queries.SELECTION_COUNT))
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
    run = sub.add_parser("run", help="materialize everything (only LLM work that is missing or failed), then "
                                     "print the summary; exits 1 when a partition failed")
    run.add_argument("--force", action="store_true", help="re-send every LLM request, not only missing or failed ones "
                     "(a failure still never replaces a good result)")
    run.add_argument("--from", dest="start", metavar="ASSET", choices=["corpus_tokens", "sparse_coders", "activations",
                     "latent_stats", "examples", "explanations", "scores", "latent_pages"],
                     help="materialize this asset and those after it only (e.g. --from explanations after a change "
                          "of explainer); the ones before must be materialized")
    run.add_argument("--layer", action="append", help="only this layer's partitions (repeatable)")
    run.add_argument("--latents", action="append", metavar="RANGE", help="only this latent range's partitions, "
                     "e.g. 00000-01023 (repeatable)")
    fmt = dict(choices=FORMATS, default="table", help="table (fits 100 columns), csv, json or markdown")
    sub.add_parser("summary", help="per-partition summary from DuckDB").add_argument("--format", **fmt)
    q = sub.add_parser("sql", help="run a read-only SQL query against the warehouse (no writes, no file access)")
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
    from .core.errors import InputError, StorageError, one_line

    try:
        if args.cmd in cli_latents.COMMANDS:
            from .core.config import load_config

            _existing(load_config())  # they read the warehouse: a missing one is an error, never created
            return cli_latents.run(args)
        return {"run": cmd_run, "summary": cmd_summary, "sql": cmd_sql, "snapshot": cmd_snapshot,
                "explainers": cmd_explainers, "estimate": cmd_estimate}[args.cmd](args)
    except (ConfigError, InputError, StorageError) as e:
        print(f"autointerp: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
