"""The monotone merge rules, the two-class rule of classifier scores, keys redacted from URLs, and where relative
config paths resolve (pure code over a real DuckDB file; no LLM)."""

from __future__ import annotations

import os

import polars as pl
import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.fingerprint import fingerprint
from autointerp_assets.core.identity import explainer_spec
from autointerp_assets.core.redaction import redact, redact_url
from autointerp_assets.core.scoring import metrics
from autointerp_assets.core.stages.incremental import done_latents
from autointerp_assets.core.storage import Warehouse
from autointerp_assets.core.storage.monotone import merge
from autointerp_assets_tests.conftest import write_config

KEY = ("layer", "latent", "explainer_fp")


def _rows(**by_latent) -> pl.DataFrame:
    return pl.DataFrame([{"layer": "l", "latent": int(k[1:]), "explainer_fp": "e", "status": st,
                          "explanation": text, "error": err, "sampler_fp": "s"}
                         for k, (st, text, err) in by_latent.items()],
                        schema_overrides={"explanation": pl.Utf8, "error": pl.Utf8})


def _write(wh, frame) -> dict:
    with wh.write() as con:
        return merge(con, wh, "explanations", frame, KEY, "error")


def _state(wh) -> dict:
    return {r["latent"]: r for r in wh.query("SELECT * FROM explanations ORDER BY latent").iter_rows(named=True)}


def test_a_failure_never_replaces_an_ok_row_and_is_kept_beside_it(tmp_path):
    wh = Warehouse(tmp_path / "m.duckdb")
    assert _write(wh, _rows(l0=("ok", "first", None), l1=("llm_error", None, "500"), l2=("budget_exceeded", None,
                                                                                          "not sent"))) == \
        {"replaced": 3, "kept": 0}
    first = _state(wh)
    assert [first[i]["attempts"] for i in (0, 1, 2)] == [1, 1, 0]  # a budget stop is not an attempt
    assert first[1]["failed_attempts"] == 1 and first[1]["last_error"] == "500" and first[1]["last_failed_at"]
    # a later run: latent 0 fails (kept beside), 1 succeeds (replaces its failure), 2 fails (replaces not-sent)
    assert _write(wh, _rows(l0=("llm_error", None, "timeout"), l1=("ok", "second", None),
                            l2=("parse_error", None, "no marker"))) == {"replaced": 2, "kept": 1}
    now = _state(wh)
    assert now[0]["status"] == "ok" and now[0]["explanation"] == "first"
    assert now[0]["created_at"] == first[0]["created_at"]  # the good row itself is untouched
    assert (now[0]["attempts"], now[0]["failed_attempts"], now[0]["last_error"]) == (2, 1, "timeout")
    assert now[0]["last_failed_at"] >= now[0]["created_at"]
    assert now[1]["status"] == "ok" and now[1]["explanation"] == "second" and now[1]["attempts"] == 2
    assert now[1]["last_error"] == "500"  # history stays; the failure is older than the good row
    assert now[2]["status"] == "parse_error" and now[2]["attempts"] == 1 and now[2]["failed_attempts"] == 1
    # a newer ok replaces an ok; the failures view shows the kept failure only while it is the latest news
    failures = wh.query("SELECT latent, status, detail FROM failures WHERE stage = 'explanation' ORDER BY latent")
    assert failures.rows() == [(0, "ok (kept)", "timeout"), (2, "parse_error", "no marker")]
    _write(wh, _rows(l0=("ok", "third", None)))
    assert _state(wh)[0]["explanation"] == "third" and _state(wh)[0]["attempts"] == 3
    assert done_latents(wh, "l", 0, 9, "e") == {0, 1}
    assert wh.scalar("SELECT count(*) FROM explanations") == 3  # one row per unit, always


def test_a_classifier_score_needs_answered_items_of_both_classes():
    m = metrics.classification_metrics([True, True, False, False], [True, False, None, None])
    assert m["balanced_accuracy"] is None  # only the true-positive rate would be left: not a balanced accuracy
    assert metrics.score_status(m, "balanced_accuracy") == (
        "undefined", "balanced accuracy undefined: no non-activating item was scored (2 failed)")
    both = metrics.classification_metrics([True, True, False, False], [True, False, False, None])
    assert metrics.score_status(both, "balanced_accuracy") == ("ok", None)
    assert metrics.score_status(metrics.classification_metrics([True], [None]), "balanced_accuracy")[0] == "failed"


def test_keys_written_into_urls_are_redacted_everywhere(tmp_path):
    url = "https://bob:sk-live-123456789@api.example.com/v1?api_key=sk-query-987654321&region=eu"
    assert redact_url(url) == "https://bob:***@api.example.com/v1?api_key=***&region=eu"
    msg = f"Error code: 401 - bad key sk-query-987654321 for {url}; Bearer abcdefghijklmnop"
    out = redact(msg)
    assert "sk-live" not in out and "sk-query" not in out and "abcdefghijklmnop" not in out
    os.environ["AUTOINTERP_TEST_SECRET"] = "plain-secret-value"
    try:
        assert "plain-secret" not in redact("it said plain-secret-value", ["AUTOINTERP_TEST_SECRET"])
    finally:
        del os.environ["AUTOINTERP_TEST_SECRET"]
    cfg = load_config(write_config(tmp_path / "k.yaml", {"explainer": {"llm": {"engine": "openai", "base_url": url,
                                                                               "model": "m"}}}))
    spec = explainer_spec(cfg, tmp_path)
    assert "sk-live" not in str(spec) and "sk-query" not in str(spec) and "api.example.com" in str(spec)
    # the key is not part of the fingerprint: the same server with another key is the same explainer
    other = load_config(write_config(tmp_path / "k2.yaml", {"explainer": {"llm": {
        "engine": "openai", "base_url": url.replace("123456789", "000000000"), "model": "m"}}}))
    assert fingerprint("explainer", spec) == fingerprint("explainer", explainer_spec(other, tmp_path))


@pytest.mark.parametrize("where", ["project", "data"])
def test_relative_paths_resolve_against_the_config_files_project(tmp_path, monkeypatch, where):
    monkeypatch.delenv("AUTOINTERP_ROOT", raising=False)
    root = tmp_path / "proj"
    folder = root / "data" if where == "data" else root
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # the working directory has no data/: never the package checkout
    cfg = load_config(write_config(folder / "project.yaml", {"database": "db/x.duckdb", "workdir": "work"}))
    assert cfg.resolve(cfg.database) == root.resolve() / "db" / "x.duckdb"
    assert cfg.resolve(cfg.workdir) == root.resolve() / "work"
    monkeypatch.setenv("AUTOINTERP_ROOT", str(tmp_path / "elsewhere"))
    assert load_config(folder / "project.yaml").resolve("a") == tmp_path / "elsewhere" / "a"
