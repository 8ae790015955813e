"""`autointerp sql` is a read-only door: writes, file reads and writes, ATTACH are refused with one line; the
README's queries still work; a warehouse that does not exist is an error and is not created (by any command
that only reads)."""

from __future__ import annotations

import re

import pytest

from autointerp_assets import cli
from autointerp_assets.core.config import load_config
from autointerp_assets.core.llm import make_client
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.stages.explanations import run_explanations
from autointerp_assets.core.stages.scores import run_scores
from autointerp_assets_tests.conftest import ROOT
from autointerp_assets_tests.support.fake_openai import FakeOpenAIServer
from autointerp_assets_tests.support.llm_faults import LAYER, project, seed

REFUSED = {
    "drop table scores": "autointerp sql is read-only",
    "insert into scores select * from scores": "autointerp sql is read-only",
    "update scores set status = 'ok'": "autointerp sql is read-only",
    "create table t as select 1": "autointerp sql is read-only",
    "select * from read_text('/etc/passwd')": "file access off",
    "select * from read_csv('/etc/passwd')": "file access off",
    "copy scores to '{tmp}/out.csv'": "file access off",
    "attach '{tmp}/other.duckdb' as other": "file access off",
    "install httpfs": "file access off",
    "set enable_external_access = true": "settings are fixed",
}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """A small warehouse with explanations, scores, controls and examples (LLM stages -> the local server)."""
    root = tmp_path_factory.mktemp("sql-door")
    with FakeOpenAIServer() as srv:
        config = project(root, "door", srv.url)
        ctx = Context.of(load_config(config))
        seed(ctx.wh.path, [0, 1, 2, 3])
        client = make_client(ctx.cfg.explainer.llm, str(ctx.workdir))
        run_explanations(ctx, client, LAYER, 0, 31)
        run_scores(ctx, client, LAYER, 0, 31)
    return config, ctx.wh


def _sql(monkeypatch, capsys, config, query):
    monkeypatch.setenv("AUTOINTERP_CONFIG", str(config))
    rc = cli.main(["sql", query])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("query", list(REFUSED))
def test_writes_and_file_access_are_refused_with_one_line(warehouse, query, monkeypatch, capsys, tmp_path):
    config, wh = warehouse
    before = wh.query("SELECT count(*) AS n FROM scores")["n"][0]
    rc, out, err = _sql(monkeypatch, capsys, config, query.format(tmp=tmp_path))
    assert rc == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autointerp sql: refused: ") and REFUSED[query] in lines[0], err
    assert wh.query("SELECT count(*) AS n FROM scores")["n"][0] == before  # nothing changed
    assert not list(tmp_path.iterdir())  # no file written
    if "passwd" in query:
        assert "root:" not in err


def test_readme_queries_still_work(warehouse, monkeypatch, capsys):
    config, _ = warehouse
    readme = "".join((ROOT / f).read_text() for f in ("README.md", "docs/sql.md", "docs/scoring.md"))  # front door + SQL
    queries = re.findall(r'autointerp sql "([^"…]+)"', readme)
    assert len(queries) >= 6, queries
    for q in queries:
        rc, out, err = _sql(monkeypatch, capsys, config, q.replace("layers.6", LAYER))
        assert rc == 0 and not err, (q, err)
        assert re.search(r"\((\d+) rows?\)", out), (q, out)
    rc, out, _ = _sql(monkeypatch, capsys, config, "select count(*) as n from latent_scores")
    assert rc == 0 and re.search(r"^\s*4\s*$", out, re.M), out  # the four explained latents


def test_a_missing_warehouse_is_an_error_and_is_not_created(tmp_path, monkeypatch, capsys):
    config = project(tmp_path, "typo", "http://127.0.0.1:9/v1", database=str(tmp_path / "autointerp.dukdb"))
    for cmd in (["sql", "select 1"], ["summary"], ["snapshot"], ["latent", "layers.1", "0"], ["search", "x"]):
        monkeypatch.setenv("AUTOINTERP_CONFIG", str(config))
        assert cli.main(cmd) == 2, cmd
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"no warehouse at {tmp_path / 'autointerp.dukdb'}" in err[0], err
        assert "run `autointerp run` first" in err[0] and "`database:`" in err[0]
    assert not (tmp_path / "autointerp.dukdb").exists()
