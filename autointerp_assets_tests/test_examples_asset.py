"""The `examples` asset through Dagster on hand-built activations: its asset checks and metadata."""

from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl

from autointerp_assets.core.config import load_config
from autointerp_assets.core.stages import explanations
from autointerp_assets.core.stages.context import Context
from autointerp_assets.defs.assets import examples
from autointerp_assets.defs.checks import non_activating_silent, train_test_disjoint
from autointerp_assets.defs.resources import ProjectResource
from autointerp_assets_tests.conftest import write_config
from autointerp_assets_tests.support.examples_data import write_activations


def test_examples_asset_reports_checks_and_unexplained_latents(tmp_path):
    path = write_config(tmp_path / "project.yaml", {
        "database": str(tmp_path / "asset.duckdb"),
        "sampler": {"window": "centred", "non_activating_source": "neighbours", "neighbour_type": "cooccurrence"}})
    cfg = load_config(path)
    ctx = Context.of(cfg)
    ctx_len, w = cfg.corpus.ctx_len, cfg.sampler.example_ctx_len
    rng = np.random.default_rng(1)
    with ctx.wh.write() as con:  # 12 corpus rows of the configured corpus fingerprint
        ctx.wh.insert(con, "tokens", pl.DataFrame({
            "corpus_fp": ctx.corpus_fp(), "row_id": np.arange(12, dtype=np.int32),
            "token_ids": [[0] + rng.integers(1, 1000, ctx_len - 1).tolist() for _ in range(12)]},
            schema_overrides={"token_ids": pl.List(pl.Int32)}))
    nw = (ctx_len - 1) // w
    # latent 3 fires at every window start of rows 0-9 (its centred windows overlap their left neighbour),
    # latent 4 in rows 4-11 (each other's neighbour), latent 5 in 2 windows (too rare); the others are dead
    acts = [(3, r, 1 + k * w, 1.0 + (r * nw + k) % 8 / 4) for r in range(10) for k in range(nw)]
    acts += [(4, r, 2 + k * w, 2.0) for r in range(4, 12) for k in range(nw)]
    acts += [(5, 0, 3, 1.0), (5, 1, 3, 1.0)]
    write_activations(ctx.wh, "layers.1", 0, 31, ctx_len, acts)

    key = "00000-00031|layers.1"
    with dg.instance_for_test() as instance:
        res = dg.materialize([examples, train_test_disjoint, non_activating_silent], partition_key=key,
                             instance=instance, resources={"project": ProjectResource(config_path=str(path))})
        # the checks are partitioned: each evaluation is recorded for this partition (the UI's Partition column)
        for check in ("train_test_disjoint", "non_activating_silent"):
            (rec,) = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey("examples"), check), limit=5)
            assert rec.partition == key
    assert res.success
    checks = {c.check_name: c for c in res.get_asset_check_evaluations()}
    assert checks["train_test_disjoint"].passed and checks["non_activating_silent"].passed
    assert checks["train_test_disjoint"].metadata["overlapping_windows"].value == 0
    meta = res.asset_materializations_for_node("examples")[0].metadata
    assert meta["too_rare_latents"].value == "5"
    assert meta["dead_latents"].value == ", ".join(str(i) for i in range(32) if i not in (3, 4, 5))
    assert meta["negatives_neighbours"].value == 2 * cfg.sampler.n_non_activating
    sel = ctx.wh.query("SELECT latent, status FROM latent_selection WHERE status <> 'dead' ORDER BY latent")
    assert sel.rows() == [(3, "selected"), (4, "selected"), (5, "too_rare")]
    nb = ctx.wh.query("SELECT latent, neighbour, rank, kind FROM latent_neighbours ORDER BY latent, rank")
    assert nb.rows() == [(3, 4, 1, "cooccurrence"), (3, 5, 2, "cooccurrence"), (4, 3, 1, "cooccurrence")]
    neg = ctx.wh.query("SELECT latent, row_id, neighbour FROM examples WHERE split = 'non_activating'")
    assert set(neg.filter(pl.col("latent") == 3)["row_id"]) <= {10, 11}  # 4's windows where 3 is silent
    assert set(neg.filter(pl.col("latent") == 4)["row_id"]) <= {0, 1, 2, 3}
    assert checks["train_test_disjoint"].metadata["shared_negatives"].value == 0

    # the contrastive explainer reads its own negatives, never the windows the scorers score
    contrastive = Context.of(cfg.model_copy(update={"explainer": cfg.explainer.model_copy(update={"kind": "contrastive"})}))
    shown = explanations.explainer_examples(contrastive, "layers.1", 0, 31)
    scored = ctx.wh.query("SELECT latent, example_id FROM examples WHERE split = 'non_activating'")
    for lat, silent_rows in ((3, 2), (4, 4)):  # few silent windows here: the explainer gets what the scorers left
        counter = {e.example_id for e in shown[lat][explanations.COUNTEREXAMPLES]}
        theirs = set(scored.filter(pl.col("latent") == lat)["example_id"])
        # (random make-up draws are finite: a latent firing in most windows may get fewer, never more)
        assert 0 < len(counter) <= min(cfg.sampler.n_train_non_activating, silent_rows * nw - len(theirs))
        assert "non_activating" not in shown[lat] and not counter & theirs
        assert all(not e.activating and max(e.activations) == 0 for e in shown[lat][explanations.COUNTEREXAMPLES])
