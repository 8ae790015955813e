"""The Dagster instance on PostgreSQL (deploy/dagster.yaml): runs launched by separate processes -- as from
separate hosts -- are one history, read back from a third, and nothing of it is in SQLite files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psycopg2
import pytest

from autointerp_assets_tests.conftest import write_config
from autointerp_assets_tests.support.postgres import create_database, postgres_server
from autointerp_assets_tests.support.projects import ROOT

pytestmark = pytest.mark.slow


def test_runs_from_separate_processes_are_one_history_in_postgres(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    cfg = write_config(tmp_path / "project.yaml", {"database": str(tmp_path / "warehouse.duckdb")})
    with postgres_server() as pg:
        create_database(pg, "dagster")
        url = f"postgresql+psycopg2://{pg['user']}@{pg['host']}:{pg['port']}/dagster"
        env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": url, "AUTOINTERP_CONFIG": str(cfg)}
        # two "hosts" at once: each prepares the instance and materializes the corpus in a run of its own
        procs = [subprocess.Popen([sys.executable, "-m", "dagster", "asset", "materialize", "-m",
                                   "autointerp_assets.definitions", "--select", "corpus_tokens"], env=env,
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=600)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [o[-2000:] for o in outs]
        read = subprocess.run([sys.executable, "-c", (
            "import dagster as dg\n"
            "with dg.DagsterInstance.get() as inst:\n"
            "    runs = inst.get_runs()\n"
            "    ev = inst.get_latest_materialization_event(dg.AssetKey('corpus_tokens'))\n"
            "    print(len(runs), sorted(r.status.value for r in runs), ev is not None, type(inst.run_storage).__name__)\n")],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert read.returncode == 0, read.stderr[-2000:]
        assert read.stdout.split()[-5:] == ["2", "['SUCCESS',", "'SUCCESS']", "True", "PostgresRunStorage"]
        con = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["user"], dbname="dagster")
        try:
            with con.cursor() as cur:
                cur.execute("SELECT count(*) FROM runs")
                n_runs = cur.fetchone()[0]
                cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
                n_mat = cur.fetchone()[0]
        finally:
            con.close()
    assert (n_runs, n_mat) == (2, 2)
    assert not list(home.rglob("*.db"))  # no SQLite storage beside it
