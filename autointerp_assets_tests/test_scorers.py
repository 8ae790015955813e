"""Stage scores' scorers (core/stages/scorers.py) on the tiny pipeline's warehouse: real SmolLM2 (vLLM +
transformers), real MiniLM, real DuckDB, after a Dagster materialization of every partition (the test_pipeline fixture pattern)."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.fingerprint import fingerprint
from autointerp_assets.core.identity import explainer_spec
from autointerp_assets.core.llm import make_client
from autointerp_assets.core.scoring import controls
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.stages.scorers import run_scorers
from autointerp_assets.core.stages.scores import scores_metadata
from autointerp_assets.core.storage import Warehouse
from autointerp_assets.defs.assets import ALL, PARTITIONED_ASSETS, corpus_tokens, sparse_coders
from autointerp_assets.defs.partitions import PARTITIONS
from autointerp_assets.defs.resources import LLMResource, ProjectResource
from autointerp_assets_tests.conftest import CONFIG_PATH, ROOT, write_config

pytestmark = pytest.mark.slow

EXTRA = ["embedding", "intruder", "simulation", "surprisal"]
CONTROLLED = ["detection", "embedding", "fuzzing", "simulation", "surprisal"]


def materialize(instance, selection, partition_key=None):
    res = dg.materialize(ALL, selection=selection, partition_key=partition_key, instance=instance,
                         resources={"project": ProjectResource(config_path=str(CONFIG_PATH)), "llm": LLMResource()})
    assert res.success


@pytest.fixture(scope="module")
def warehouse() -> Warehouse:
    """The session's tiny warehouse; materialized here unless test_pipeline already scored every partition."""
    cfg = load_config(CONFIG_PATH)
    wh = Warehouse(cfg.resolve(cfg.database))
    efp = fingerprint("explainer", explainer_spec(cfg, cfg.resolve(cfg.workdir)))
    done = wh.scalar("SELECT count(DISTINCT (layer, latent // 32)) FROM scores WHERE explainer_fp = ? "
                     "AND scorer = 'detection'", [efp])
    if done != len(PARTITIONS.get_partition_keys()):
        with dg.instance_for_test() as inst:
            materialize(inst, [corpus_tokens, sparse_coders])
            for key in PARTITIONS.get_partition_keys():
                materialize(inst, PARTITIONED_ASSETS, key)
    return wh


@pytest.fixture(scope="module")
def scored(warehouse, tmp_root):
    # same database and explainer; the simulation sees 2 + 2 examples per latent to keep the suite fast
    cfg = load_config(write_config(tmp_root / "scores-more.yaml", {"scoring": {
        "simulation_max_examples": 2, "scorers": EXTRA, "control_scorers": CONTROLLED, "bootstrap_samples": 1000}}))
    ctx = Context.of(cfg)
    client = make_client(cfg.scorer_llm, str(ctx.workdir))
    outs = {}
    for layer in cfg.layer_keys():
        for first, last in cfg.latents.ranges():
            outs[(layer, first)] = run_scorers(ctx, client, layer, first, last)
    return ctx, client, outs


def test_every_scorer_and_control_has_a_row_per_explained_latent(warehouse, scored):
    ctx, _, outs = scored
    efp = next(iter(outs.values()))["explainer_fp"]  # (the baseline explainers' rows sit beside, not counted here)
    explained = warehouse.query("SELECT layer, latent, explainer_fp FROM explanations WHERE status = 'ok' "
                                "AND explainer_fp = ?", [efp])
    n = explained.height
    assert n >= 8
    per = dict(warehouse.query("SELECT scorer, count(*) AS n FROM scores WHERE explainer_fp = ? GROUP BY scorer",
                               [efp]).iter_rows())
    for s in EXTRA + ["detection", "fuzzing"]:
        assert per[s] == n, s
    for s in CONTROLLED:
        assert per[f"{s}_control"] == n, s
    rows = warehouse.query("SELECT * FROM scores WHERE explainer_fp = ?", [efp])
    assert set(rows.filter(pl.col("control"))["scorer"]) == {f"{s}_control" for s in CONTROLLED}
    assert rows["latent_range"].null_count() == 0 and rows["metric"].null_count() == 0
    ok = rows.filter(pl.col("status") == "ok")
    for r in ok.iter_rows(named=True):
        lo, hi = {"correlation": (-1, 1)}.get(r["metric"], (0, 1))
        assert lo <= r["value"] <= hi, r
        if r["ci_low"] is not None:
            assert r["ci_low"] - 1e-9 <= r["value"] <= r["ci_high"] + 1e-9, r
    # detection / fuzzing rows of stage scores got their bootstrap intervals
    det = rows.filter((pl.col("scorer") == "detection") & (pl.col("status") == "ok"))
    assert det["ci_low"].null_count() == 0 and (det["value"] == det["balanced_accuracy"]).all()
    # embedding and surprisal keep one item per example with its own score
    items = warehouse.query("SELECT scorer, count(*) AS n, count(value) AS v FROM score_items "
                            "WHERE scorer IN ('embedding', 'surprisal') AND explainer_fp = ? GROUP BY scorer", [efp])
    assert (items["n"] == items["v"]).all() and items["n"].min() == n * 8  # 4 test + 4 non-activating each
    # simulation and intruder calls are in the ledger
    calls = dict(warehouse.query("SELECT scorer, count(*) FROM llm_calls WHERE scorer IN "
                                 "('simulation', 'simulation_control', 'intruder', 'detection_control') GROUP BY ALL"
                                 ).iter_rows())
    assert calls["simulation"] == n * 4 and calls["simulation_control"] == n * 4 and calls["intruder"] > 0
    assert calls["detection_control"] >= n * 2  # 8 items, 4 per prompt: 2 prompts per latent
    ctl = rows.filter(pl.col("scorer") == "detection_control")
    assert (ctl["n_batches"] == 2).all() and (ctl["n"] == 8).all()


def test_the_control_uses_another_latents_explanation(warehouse, scored):
    ctx, _, outs = scored
    efp = next(iter(outs.values()))["explainer_fp"]
    for (layer, first), out in outs.items():
        lats = warehouse.query("SELECT latent FROM explanations WHERE layer = ? AND latent BETWEEN ? AND ? AND "
                               "status = 'ok' AND explainer_fp = ? ORDER BY latent",
                               [layer, first, first + 31, efp])["latent"].to_list()
        d = controls.donors(lats, f"{ctx.cfg.scoring.seed}:{layer}:{out['latent_range']}:{efp}")
        assert len(d) == len(lats) == out["control_pairs"] and all(d[k] != k for k in d)
    # the control's embedding AUROC is that of the donor explanation on this latent's examples: different rows
    pair = warehouse.query("SELECT * FROM score_controls WHERE scorer = 'embedding'")
    assert pair.height == warehouse.scalar("SELECT count(*) FROM scores WHERE scorer = 'embedding' AND explainer_fp = ?",
                                           [efp])
    assert (pair["difference"] - (pair["real_value"] - pair["control_value"])).abs().max() < 1e-12


def test_summary_view_matches_the_stage_summary(warehouse, scored):
    _, _, outs = scored
    view = warehouse.query("SELECT * FROM scorer_summary WHERE explainer_fp = ?",
                           [next(iter(outs.values()))["explainer_fp"]])
    assert set(view["scorer"]) == set(EXTRA + ["detection", "fuzzing"])
    for (layer, _), out in outs.items():
        for scorer, s in out["summary"].items():
            row = view.filter((pl.col("layer") == layer) & (pl.col("latent_range") == out["latent_range"])
                              & (pl.col("scorer") == scorer)).row(0, named=True)
            assert row["latents"] == s["latents"] and row["median"] == pytest.approx(s["median"])
            assert (row["q25"], row["q75"]) == (pytest.approx(s["q25"]), pytest.approx(s["q75"]))
            if scorer != "intruder":
                assert row["median_control"] == pytest.approx(s["median_control"])
                assert row["median_difference"] == pytest.approx(s["median_difference"])
                assert row["difference_ci_low"] == pytest.approx(s["difference_ci_low"])
                assert row["difference_ci_high"] == pytest.approx(s["difference_ci_high"])
            else:
                assert "median_control" not in s and row["median_control"] is None
        md = scores_metadata(out)
        assert md["embedding_median_difference"] == out["summary"]["embedding"]["median_difference"]
        assert len(md["simulation_difference_ci95"]) == 2 and "intruder_median_accuracy" in md


def test_flags_are_filled_for_every_latent_with_activations(warehouse, scored):
    stats = warehouse.query("SELECT * FROM latent_stats WHERE n_firing > 0")
    assert stats.height > 0
    assert stats["position_u"].null_count() == 0 and stats["flag_positional"].null_count() == 0
    assert ((stats["position_u"] >= 0) & (stats["position_u"] <= 1)).all()
    assert ((stats["top_token_share"] > 0) & (stats["top_token_share"] <= 1)).all()
    # the flags are what the thresholds say
    cfg = load_config(CONFIG_PATH).scoring
    assert (stats["flag_positional"] == (stats["position_u"] >= cfg.positional_threshold)).all()
    assert (stats["flag_single_token"] == (stats["top_token_share"] >= cfg.single_token_share)).all()


def test_rerun_replaces_exactly_its_own_rows(warehouse, scored):
    ctx, client, _ = scored
    others = "NOT (layer = 'layers.3' AND latent BETWEEN 32 AND 63)"
    with warehouse.read() as con:
        before = con.execute(f"SELECT layer, latent, scorer, value, ci_low FROM scores WHERE {others} ORDER BY ALL").fetchall()
        n_own = con.execute("SELECT count(*) FROM scores WHERE layer = 'layers.3' AND latent BETWEEN 32 AND 63").fetchone()[0]
        n_items = con.execute("SELECT count(*) FROM score_items").fetchone()[0]
    out = run_scorers(ctx, client, "layers.3", 32, 63)
    with warehouse.read() as con:
        assert con.execute(f"SELECT layer, latent, scorer, value, ci_low FROM scores WHERE {others} ORDER BY ALL").fetchall() == before
        assert con.execute("SELECT count(*) FROM scores WHERE layer = 'layers.3' AND latent BETWEEN 32 AND 63").fetchone()[0] == n_own
        assert con.execute("SELECT count(*) FROM score_items").fetchone()[0] == n_items
    # seeded: embedding, surprisal and the derangement give the same numbers again
    assert out["summary"]["embedding"] == scored[2][("layers.3", 32)]["summary"]["embedding"]


def test_every_sql_statement_the_readme_documents_runs(warehouse, scored):
    """The README's ```sql blocks and `autointerp sql "…"` lines, run as a user would paste them."""
    import re

    readme = "".join((ROOT / f).read_text() for f in ("README.md", "docs/sql.md", "docs/scoring.md"))  # front door + SQL
    blocks = re.findall(r"```sql\n(.*?)```", readme, re.S)
    stmts = [s.strip() for b in blocks for s in re.sub(r"--[^\n]*", "", b).split(";") if s.strip()]
    stmts += re.findall(r'autointerp sql "([^"…]+)"', readme)
    assert len(stmts) >= 8
    for stmt in stmts:
        frame = warehouse.query(stmt)  # raises on a column or view the README names wrongly
        assert frame.width > 0, stmt
    assert warehouse.query("select real_value, control_value from score_controls").height > 0
