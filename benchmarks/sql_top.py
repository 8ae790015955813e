"""SQL at analyst speed (not a test): a synthetic warehouse of ~1M score rows made through the project's own schema
(``Warehouse``: the tables and views ``autointerp run`` makes), then "the top-100 latents by a scorer" — the named
query ``queries.TOP_LATENTS``, the same with the explanations joined to its 100 rows, and the plain SQL an analyst would type — on an
open read-only connection, and through the SQL door (``autointerp sql``: connect, run, close). Baseline in the same
run: the same top-100 from the ``latest_scores`` view (a window over every score); the README's example
query over the ``latent_scores`` view beside it. Goal: < 100 ms.

    .venv/bin/python benchmarks/sql_top.py [--layers 4] [--latents 32768] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import describe, load, verdict  # noqa: E402

from autointerp_assets.core.storage import Warehouse  # noqa: E402
from autointerp_assets.core.storage.queries import TOP_LATENTS, bind  # noqa: E402
from autointerp_assets.core.storage.sql_door import read_only_query  # noqa: E402

SCORERS = ("detection", "fuzzing", "embedding", "simulation")
EXPLAINERS = ("explainer-aaaaaaaaaaaa", "explainer-bbbbbbbbbbbb")
PLAIN = ("SELECT layer, latent, explainer_fp, value FROM scores WHERE scorer = 'detection' AND status = 'ok' "
         "AND NOT control ORDER BY value DESC LIMIT 100")
BASELINE = "SELECT * FROM latest_scores WHERE scorer = 'detection' ORDER BY balanced_accuracy DESC LIMIT 100"
EXPLAINED = ("WITH top AS ({top}) SELECT t.*, e.explanation FROM top t LEFT JOIN explanations e "
             "ON e.layer = t.layer AND e.latent = t.latent AND e.explainer_fp = t.explainer_fp")
README = ("SELECT layer, latent, explanation, detection_bacc, fuzzing_bacc FROM latent_scores "
          "ORDER BY fuzzing_bacc DESC LIMIT 100")  # the README's example


def build(wh: Warehouse, layers: int, latents: int, seed: int = 0) -> int:
    """Score rows for every (layer, latent, explainer, scorer) plus a control row each; explanations per latent."""
    rng = np.random.default_rng(seed)
    total = 0
    with wh.write() as con:
        for li in range(layers):
            layer = f"layers.{li}"
            for fp in EXPLAINERS:
                lat = np.arange(latents, dtype=np.int32)
                wh.insert(con, "explanations", pl.DataFrame({
                    "layer": layer, "latent": lat, "explainer_fp": fp, "status": "ok",
                    "explanation": [f"latent {i} of {layer}" for i in range(latents)], "sampler_fp": "sampler-x"}))
                for scorer in SCORERS:
                    for control in (False, True):
                        v = rng.beta(4 if not control else 2, 2, latents)
                        frame = pl.DataFrame({
                            "layer": layer, "latent": lat, "explainer_fp": fp,
                            "scorer": scorer + ("_control" if control else ""), "scorer_fp": "scorer-x",
                            "sampler_fp": "sampler-x", "status": np.where(rng.random(latents) < 0.02, "failed", "ok"),
                            "n": 40, "n_failed": 0, "balanced_accuracy": v, "n_batches": 8, "n_failed_batches": 0,
                            "control": control, "metric": "balanced_accuracy", "value": v, "ci_low": v - 0.1,
                            "ci_high": v + 0.1, "latent_range": f"{0:05d}-{latents - 1:05d}"})
                        total += wh.insert(con, "scores", frame)
    return total


def timed(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm
    secs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        secs.append(time.perf_counter() - t0)
    return statistics.median(secs) * 1e3, min(secs) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--latents", type=int, default=16_384)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        wh = Warehouse(Path(d) / "w.duckdb")
        t0 = time.perf_counter()
        rows = build(wh, a.layers, a.latents)
        print(f"{describe()}; {rows:,} score rows built in {time.perf_counter() - t0:.1f}s")
        con = duckdb.connect(str(wh.path), read_only=True)
        params = bind(TOP_LATENTS, {"scorer": "detection", "layer": None, "n": 100})
        top = con.execute(TOP_LATENTS, params).pl()
        plain = con.execute(PLAIN).pl()
        explained_sql = EXPLAINED.replace("{top}", TOP_LATENTS)
        explained = con.execute(explained_sql, params).pl()
        assert top.height == 100 and explained["explanation"].null_count() == 0
        assert top["value"].to_list() == plain["value"].to_list()  # the named query and the plain SQL agree
        before = load()
        res = {
            "latest_scores view (baseline)": timed(lambda: con.execute(BASELINE).fetchall(), a.repeat),
            "latent_scores view (README example)": timed(lambda: con.execute(README).fetchall(), a.repeat),
            "plain SQL top-100": timed(lambda: con.execute(PLAIN).fetchall(), a.repeat),
            "TOP_LATENTS": timed(lambda: con.execute(TOP_LATENTS, params).fetchall(), a.repeat),
            "TOP_LATENTS + explanations joined": timed(lambda: con.execute(explained_sql, params).fetchall(), a.repeat),
        }
        con.close()  # the door opens its own connection (one process may not hold two configurations)
        res["SQL door (connect + run + close)"] = timed(lambda: read_only_query(wh, PLAIN), max(3, a.repeat // 4))
        after = load()
    base = res["latest_scores view (baseline)"][0]
    print(f"{'query':36} {'median ms':>10} {'best ms':>9} {'x baseline':>11}")
    for name, (med, best) in res.items():
        print(f"{name:36} {med:10.1f} {best:9.1f} {base / med:10.1f}x")
    quiet, line = verdict(before, after)
    print(line)
    if quiet:
        med = res["TOP_LATENTS"][0]
        print(f"HEADLINE: top-100 latents by a scorer over {rows:,} score rows in {med:.1f} ms "
              f"({'under' if med < 100 else 'OVER'} the 100 ms goal)")


if __name__ == "__main__":
    main()
