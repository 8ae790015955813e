"""queries.TOP_LATENTS: the best latents by one scorer, real rows only, ok rows only, per layer or all."""

import polars as pl

from autointerp_assets.core.storage import Warehouse
from autointerp_assets.core.storage.queries import TOP_LATENTS, bind


def _score(layer, latent, scorer, value, status="ok", control=False, metric="balanced_accuracy"):
    return {"layer": layer, "latent": latent, "explainer_fp": "explainer-x", "scorer": scorer, "scorer_fp": "s",
            "sampler_fp": "p", "status": status, "n": 10, "n_failed": 0, "balanced_accuracy": value,
            "n_batches": 1, "n_failed_batches": 0, "control": control, "metric": metric, "value": value}


def test_top_latents_ranks_real_ok_rows_of_one_scorer(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    rows = [_score("layers.1", 0, "detection", 0.9), _score("layers.1", 1, "detection", 0.7),
            _score("layers.2", 5, "detection", 0.8), _score("layers.2", 6, "detection", 0.99, status="failed"),
            _score("layers.1", 2, "detection_control", 0.95, control=True), _score("layers.1", 3, "fuzzing", 0.97),
            {**_score("layers.2", 7, "detection", None), "balanced_accuracy": 0.75, "metric": None}]
    with wh.write() as con:
        wh.insert(con, "scores", pl.DataFrame(rows))
    with wh.read() as con:
        def top(n, layer=None, scorer="detection"):
            res = con.execute(TOP_LATENTS, bind(TOP_LATENTS, {"scorer": scorer, "layer": layer, "n": n})).fetchall()
            return [(r[0], r[1], r[5]) for r in res]

        assert top(3) == [("layers.1", 0, 0.9), ("layers.2", 5, 0.8), ("layers.2", 7, 0.75)]  # no control/failed
        assert top(10, layer="layers.1") == [("layers.1", 0, 0.9), ("layers.1", 1, 0.7)]
        assert top(10, scorer="fuzzing") == [("layers.1", 3, 0.97)]
        metric = con.execute(TOP_LATENTS, bind(TOP_LATENTS, {"scorer": "detection", "layer": "layers.2", "n": 5}))
        assert [r[4] for r in metric.fetchall()] == ["balanced_accuracy", "balanced_accuracy"]
