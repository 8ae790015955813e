"""The whole tiny project into a DuckLake (catalog in a PostgreSQL started here, Parquet under a directory) gives
every row of every table of the same project in a DuckDB file. Each run is `autointerp run` in a process of its
own with a float32 LLM, so the two see the same answers (a second run in one process would hit a warm prefix
cache, whose logprobs differ in the last bits)."""

from __future__ import annotations

import duckdb
import pytest

from autointerp_assets.core.storage import TABLES
from autointerp_assets.core.storage.lake import Lake
from autointerp_assets_tests.support.postgres import create_database, postgres_server
from autointerp_assets_tests.support.projects import ROOT
from autointerp_assets_tests.support.same_rows import compare_attached, run_pipeline

pytestmark = pytest.mark.slow


def test_the_project_in_a_lake_has_every_row_of_the_project_in_a_duckdb_file(tmp_path):
    with postgres_server() as pg:
        lake = {"catalog": create_database(pg, "tiny_lake"), "data_path": str(tmp_path / "lake" / "data")}
        run_pipeline(ROOT, tmp_path / "file", dtype="float32")
        run_pipeline(ROOT, tmp_path / "lake", dtype="float32", extra={"lake": lake})
        assert not (tmp_path / "lake" / "warehouse.duckdb").exists()  # its tables went to the lake only
        assert f"[autointerp] warehouse: the lake with catalog '{lake['catalog']}'" in \
            (tmp_path / "lake" / "run.log").read_text()
        con = duckdb.connect()
        con.execute(f"ATTACH '{tmp_path / 'file' / 'warehouse.duckdb'}' AS a (READ_ONLY)")
        Lake(lake["catalog"], lake["data_path"] + "/").attach(con, "b", read_only=True)
        rows = compare_attached(con, tmp_path / "file", tmp_path / "lake")
        counts = {t: con.execute(f"SELECT count(*) FROM b.{t}").fetchone()[0]
                  for t in ("activation_cache", "example_windows", "explanations", "scores")}
        con.close()
    assert {t for t, *_ in rows} == set(TABLES)
    differ = [(t, n_a, n_b, d, cols) for t, n_a, n_b, d, cols in rows if d or cols or n_a != n_b]
    assert differ == [], differ
    assert min(counts.values()) > 0, counts  # (the comparison compared something)
