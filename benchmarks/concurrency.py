"""Concurrency benchmark (not a test): partition runs launched at once vs one after another, on one
DuckDB warehouse and one persistent Dagster instance; prints ratios against the sequential baseline.

1. sequential: N `dagster asset materialize` runs (activations + latent_stats, one partition each), one
   after another: the baseline;
2. at once: the same N runs launched together (writers interleave their transactions under the file lock);
3. at once while an analyst's read-only DuckDB session stays open until a writer waits on it, then --hold
   seconds more: the writers wait for it (and say so) instead of failing; the extra time is about the hold.

    .venv/bin/python benchmarks/concurrency.py [--ranges 4] [--hold 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp_assets_tests.support.analyst import ANALYST  # noqa: E402  (the analyst's read-only session)


def launch(keys: list[str], env: dict, at_once: bool) -> tuple[float, list[str]]:
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster), "asset", "materialize", "-m", "autointerp_assets.definitions",
           "--select", "activations,latent_stats", "--partition"]
    t0 = time.perf_counter()
    outs = []
    if at_once:
        procs = [subprocess.Popen(cmd + [k], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for k in keys]
        outs = [p.communicate()[0] for p in procs]
        codes = [p.returncode for p in procs]
    else:
        codes = []
        for k in keys:
            p = subprocess.run(cmd + [k], cwd=ROOT, env=env, capture_output=True, text=True)
            outs.append(p.stdout + p.stderr)
            codes.append(p.returncode)
    secs = time.perf_counter() - t0
    if any(codes) or any("Conflicting lock" in o for o in outs):
        raise SystemExit(f"a run failed: {[o[-2000:] for o, c in zip(outs, codes) if c]}")
    return secs, outs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranges", type=int, default=4, help="latent ranges per hookpoint (2 hookpoints)")
    ap.add_argument("--hold", type=float, default=10.0, help="seconds the analyst session stays open")
    args = ap.parse_args()
    import dagster as dg

    from autointerp_assets.core import stages
    from autointerp_assets.core.config import load_config
    from autointerp_assets_tests.support.projects import tiny

    tmp = Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    raw = {**tiny(tmp / "autointerp.duckdb"),
           "latents": {"start": 0, "stop": 16 * args.ranges, "range_size": 16}}
    (tmp / "project.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp / "project.yaml")
    ctx = stages.Context.of(cfg)
    stages.run_corpus(ctx)
    stages.run_sparse_coders(ctx)
    stages.ensure_cache(ctx)  # the forward pass once; the runs publish from it
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)):
        pass
    env = {**os.environ, "AUTOINTERP_CONFIG": str(tmp / "project.yaml"), "DAGSTER_HOME": str(home)}
    keys = [f"{lat}|{layer}" for layer in cfg.layer_keys() for lat in cfg.latent_keys()]

    seq, _ = launch(keys, env, at_once=False)
    par, _ = launch(keys, env, at_once=True)
    analyst = subprocess.Popen([sys.executable, "-c", ANALYST, str(cfg.resolve(cfg.database)), str(args.hold), "300"],
                               stdout=subprocess.PIPE, text=True)
    analyst.stdout.readline()
    held, outs = launch(keys, env, at_once=True)
    analyst.wait()
    waited = sum("DuckDB's lock is held by another program" in o for o in outs)
    print(f"{len(keys)} partition runs (activations + latent_stats), {os.cpu_count()} cores")
    print(f"  one after another (baseline): {seq:6.1f} s  1.00x")
    print(f"  all at once:                  {par:6.1f} s  {par / seq:.2f}x")
    print(f"  at once, analyst +{args.hold:.0f} s:      {held:6.1f} s  {held / seq:.2f}x "
          f"(+{held - par:.1f} s vs at once; {waited}/{len(keys)} runs logged the wait; 0 failed)")


if __name__ == "__main__":
    main()
