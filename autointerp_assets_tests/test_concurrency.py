"""Concurrency: 8 partition runs launched at once (8 `dagster asset materialize` processes on one persistent
instance) all succeed with every row (activations + latent_stats: the DuckDB writers without an LLM), while an analyst's read-only DuckDB session stays open on the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from autointerp_assets.core import stages
from autointerp_assets.core.config import load_config
from autointerp_assets.core.storage import Warehouse
from autointerp_assets_tests.conftest import ROOT, write_config
from autointerp_assets_tests.support.analyst import ANALYST

pytestmark = pytest.mark.slow

HOLD_AFTER_S = 3



def test_eight_partition_runs_at_once_with_an_open_reader(tmp_path):
    # 2 hookpoints x 4 ranges of 16 latents = 8 partitions; same SAEs and corpus as the tiny config
    config = write_config(tmp_path / "project.yaml", {"database": str(tmp_path / "autointerp.duckdb"),
                                                       "latents": {"start": 0, "stop": 64, "range_size": 16}})
    cfg = load_config(config)
    assert len(cfg.layer_keys()) * len(cfg.latent_keys()) == 8
    ctx = stages.Context.of(cfg)
    stages.run_corpus(ctx)
    stages.run_sparse_coders(ctx)
    stages.ensure_cache(ctx)  # the forward pass; the 8 runs publish from it
    db = cfg.resolve(cfg.database)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)):  # create its storage once, as a running deployment has
        pass
    env = {**os.environ, "AUTOINTERP_CONFIG": str(config), "DAGSTER_HOME": str(home)}

    analyst = subprocess.Popen([sys.executable, "-c", ANALYST, str(db), str(HOLD_AFTER_S), "120"], stdout=subprocess.PIPE, text=True)
    assert int(analyst.stdout.readline()) > 0  # the session is open (and holds DuckDB's file lock)
    dagster = Path(sys.executable).with_name("dagster")
    keys = [f"{latents}|{layer}" for layer in cfg.layer_keys() for latents in cfg.latent_keys()]
    runs = [subprocess.Popen([str(dagster), "asset", "materialize", "-m", "autointerp_assets.definitions",
                              "--select", "activations,latent_stats", "--partition", key],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for key in keys]
    outs = [r.communicate(timeout=540)[0] for r in runs]
    assert analyst.stdout.readline().strip() == "released after a writer waited"
    analyst.wait(timeout=60)

    for key, r, out in zip(keys, runs, outs):
        assert r.returncode == 0, f"run {key} failed:\n{out[-3000:]}"
        assert "RUN_SUCCESS" in out, key
        assert "Could not set lock" not in out and "Conflicting lock" not in out, key
    # the writers really waited for the open session (none failed), and said why
    assert any(f"DuckDB's lock is held by another program (PID {analyst.pid})" in out for out in outs)

    wh = Warehouse(db)
    n_latents = cfg.latents.stop - cfg.latents.start
    assert wh.scalar("SELECT count(*) FROM activation_partitions") == 8
    assert wh.scalar("SELECT count(*) FROM latent_stats") == 2 * n_latents  # every latent once, no duplicates
    assert wh.scalar("SELECT count(*) FROM (SELECT DISTINCT layer, latent FROM latent_stats)") == 2 * n_latents
    # every partition published exactly the activations the forward pass cached for it
    assert wh.scalar("SELECT count(*) FROM activations") == wh.scalar("SELECT count(*) FROM activation_cache")
    assert wh.scalar("SELECT sum(n_firing) FROM latent_stats") == wh.scalar("SELECT count(*) FROM activations")
    with duckdb.connect(str(db), read_only=True) as con:  # and the file is free again for analysts
        assert con.execute("SELECT count(*) FROM latent_stats").fetchone()[0] == 2 * n_latents
