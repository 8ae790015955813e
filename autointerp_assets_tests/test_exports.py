"""Exports of the tiny pipeline's warehouse, each read back and compared with the warehouse rows: Parquet (hive by
layer), Neuronpedia's export layout (every record validated against the JSON schema transcribed from its database
models), delphi's explanation / score files (read the way delphi's analysis reads them)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import jsonschema
import polars as pl
import pytest

from autointerp_assets.core import export
from autointerp_assets.core.config import load_config
from autointerp_assets.core.identity import explainer_fp
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.storage import Warehouse
from autointerp_assets_tests.support.automation_base import base_project

pytestmark = pytest.mark.slow
SCHEMA = json.loads((Path(__file__).parent / "data" / "neuronpedia_export.schema.json").read_text())
LAYERS = ["layers.1", "layers.3"]


@pytest.fixture(scope="module")
def project():
    config, _ = base_project()
    cfg = load_config(config)
    return cfg, Warehouse(cfg.resolve(cfg.database)), explainer_fp(cfg)


def _rows(con, sql: str) -> list[str]:
    return sorted(map(repr, con.execute(sql).fetchall()))


def test_parquet_round_trip(project, tmp_path):
    cfg, wh, _ = project
    counts = export.to_parquet(wh, tmp_path)
    assert counts["explanations"] > 0 and counts["activations"] > 0 and counts["example_text"] > 0
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == ["layer=layers.1", "layer=layers.3"]
    assert (tmp_path / "fingerprints" / "data.parquet").exists() and not (tmp_path / "activation_cache").exists()
    with wh.read() as con:
        for name, n in counts.items():
            cols = [c for c in con.execute(f"SELECT * FROM {name} LIMIT 0").pl().columns]
            sel = ", ".join(f'"{c}"' for c in cols)
            if n == 0:
                continue
            one = tmp_path / name / "data.parquet"
            files = one if one.exists() else tmp_path / name / "**/*.parquet"
            back = _rows(con, f"SELECT {sel} FROM read_parquet('{files}', hive_partitioning = true)")
            assert back == _rows(con, f"SELECT {sel} FROM {name}"), name
            assert len(back) == n
    only = export.to_parquet(wh, tmp_path / "one", layer="layers.3")
    assert duckdb.sql(f"SELECT DISTINCT layer FROM read_parquet('{tmp_path}/one/scores/**/*.parquet', "
                      "hive_partitioning = true)").fetchall() == [("layers.3",)]
    assert only["fingerprints"] == counts["fingerprints"]


def test_neuronpedia_export_validates_and_round_trips(project, tmp_path):
    cfg, wh, efp = project
    ctx = Context.of(cfg)
    counts = export.to_neuronpedia(wh, tmp_path, LAYERS, efp, ctx.corpus_fp(), model_id="smollm2",
                                   source_set="autointerp-res", explainer_name="project")
    assert sorted(p.name for p in (tmp_path / "smollm2").iterdir()) == ["1-autointerp-res", "3-autointerp-res"]
    back = export.read_neuronpedia(tmp_path)
    for table, records in back.items():
        for r in records:
            jsonschema.validate(r, {**SCHEMA["$defs"][table], "$defs": SCHEMA["$defs"]})
    assert {t: len(back[t]) for t in ("Neuron", "Activation", "Explanation")} == \
        {"Neuron": counts["features"], "Activation": counts["activations"], "Explanation": counts["explanations"]}
    # explanations: the explainer's ok rows, keyed by source (layer) and index
    want = {(f"{layer[-1]}-autointerp-res", str(lat)): text for layer, lat, text in wh.query(
        "SELECT layer, latent, explanation FROM explanations WHERE explainer_fp = ? AND status = 'ok'", [efp]).rows()}
    assert {(e["layer"], e["index"]): e["description"] for e in back["Explanation"]} == want
    det = wh.query("SELECT layer, latent, value FROM scores WHERE explainer_fp = ? AND scorer = 'detection' AND "
                   "status = 'ok' LIMIT 1", [efp]).row(0)
    note = next(e["notes"] for e in back["Explanation"] if e["index"] == str(det[1]) and e["layer"][0] == det[0][-1])
    assert f"detection balanced_accuracy {det[2]:.3f}" in note
    # activations: every train / test example with its tokens and per-token values
    ex = wh.query("SELECT layer, latent, tokens FROM example_text WHERE split IN ('train', 'test')")
    assert len(back["Activation"]) == ex.height
    want_acts = sorted((f"{layer[-1]}-autointerp-res", str(lat), tuple(t["token"] for t in toks),
                        tuple(round(t["activation"], 4) for t in toks)) for layer, lat, toks in ex.rows())
    got_acts = sorted((a["layer"], a["index"], tuple(a["tokens"]), tuple(round(v, 4) for v in a["values"]))
                      for a in back["Activation"])
    assert got_acts == want_acts
    assert all(a["maxValue"] == max(a["values"]) and a["values"][a["maxValueTokenIndex"]] == a["maxValue"]
               for a in back["Activation"])
    # features: one per latent with stats, its max activation and density
    stats = {(f"{layer[-1]}-autointerp-res", str(lat)): (mx, d) for layer, lat, mx, d in wh.query(
        "SELECT layer, latent, max_activation, density FROM latent_stats").rows()}
    assert len(back["Neuron"]) == len(stats)
    for f in back["Neuron"]:
        mx, d = stats[(f["layer"], f["index"])]
        assert f["maxActApprox"] == pytest.approx(mx or 0.0) and f["frac_nonzero"] == pytest.approx(d)
    # a key Neuronpedia's tables do not have fails the schema (the importer would silently drop it)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**back["Explanation"][0], "score": 0.5}, SCHEMA["$defs"]["Explanation"])


def _bacc(grp: pl.DataFrame) -> float:
    """delphi's per-latent balanced accuracy: (TPR + TNR) / 2 over the items with a prediction."""
    g = grp.filter(pl.col("prediction").is_not_null())
    pos, neg = g.filter(pl.col("activating")), g.filter(~pl.col("activating"))
    tpr = pos["prediction"].sum() / pos.height if pos.height else 0.0
    tnr = (~neg["prediction"]).sum() / neg.height if neg.height else 0.0
    return (tpr + tnr) / 2


def test_delphi_files_round_trip(project, tmp_path):
    import torch

    cfg, wh, efp = project
    counts = export.to_delphi(wh, tmp_path, LAYERS, efp)
    expl, items = export.read_delphi(tmp_path)
    want = {(layer, lat): text for layer, lat, text in wh.query(
        "SELECT layer, latent, explanation FROM explanations WHERE explainer_fp = ? AND status = 'ok'", [efp]).rows()}
    assert expl == want and counts["explanations"] == len(want)
    assert sorted(items["score_type"].unique().to_list()) == ["detection", "fuzz"]
    assert items.height == counts["items"] == wh.scalar(
        "SELECT count(*) FROM score_items WHERE explainer_fp = ? AND scorer IN ('detection', 'fuzzing')", [efp])
    scores = {(layer, lat, s): v for layer, lat, s, v in wh.query(
        "SELECT layer, latent, scorer, balanced_accuracy FROM scores WHERE explainer_fp = ? AND status = 'ok' AND "
        "scorer IN ('detection', 'fuzzing')", [efp]).rows()}
    assert scores
    for (layer, lat, st), grp in items.group_by(["layer", "latent", "score_type"]):
        scorer = {"fuzz": "fuzzing", "detection": "detection"}[st]
        if (layer, lat, scorer) in scores:
            assert _bacc(grp) == pytest.approx(scores[(layer, lat, scorer)]), (layer, lat, scorer)
    assert items.filter(pl.col("activating") & (pl.col("text") == "")).height == 0  # every item has its tokens
    counts_pt = torch.load(tmp_path / "log" / "hookpoint_firing_counts.pt", weights_only=True)
    n = dict(wh.query("SELECT latent, n_firing FROM latent_stats WHERE layer = 'layers.1'").rows())
    assert {i: int(counts_pt["layers.1"][i]) for i in n} == n
