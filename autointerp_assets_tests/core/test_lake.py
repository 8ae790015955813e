"""The warehouse as a DuckLake on a real PostgreSQL (started here, 127.0.0.1): the same tables and views, a
partition's replace in one transaction, conflicts between writers retried, analysts never blocking writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import duckdb
import polars as pl
import pytest

from autointerp_assets.core.config import ConfigError, parse_config
from autointerp_assets.core.errors import StorageError
from autointerp_assets.core.storage import TABLES, VIEWS, Warehouse
from autointerp_assets.core.storage import lake as lake_mod
from autointerp_assets.core.storage.lake import Lake
from autointerp_assets_tests.support.object_store import KEYS, create_bucket, object_keys, s3_server
from autointerp_assets_tests.support.postgres import create_database, postgres_server


@pytest.fixture(scope="module")
def pg():
    with postgres_server() as info:
        yield info


@pytest.fixture
def lake(pg, tmp_path, request) -> Lake:
    name = "lake_" + request.node.name.lower()[:40].replace("[", "_").replace("]", "").replace("-", "_")
    return Lake(create_database(pg, name), str(tmp_path / "lake") + "/")


def _stats(layer: str, latents: list[int], status: str = "alive") -> pl.DataFrame:
    return pl.DataFrame({"layer": layer, "latent": latents, "n_firing": [1] * len(latents),
                         "n_windows": [1] * len(latents), "density": [0.1] * len(latents), "status": status,
                         "activations_fp": "activations-x"})


def _at_once(script: str, args: list[list[str]]) -> list[str]:
    """``script`` in one process per ``args``, each printing "ready" when set up, then all let go at once; their
    stderr, once every one exited 0."""
    procs = [subprocess.Popen([sys.executable, "-c", script, *a], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for a in args]
    assert [p.stdout.readline().strip() for p in procs] == ["ready"] * len(procs)
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), errors
    return errors


def test_the_lake_holds_every_table_and_view_and_replaces_partitions_exactly(lake):
    wh = Warehouse("/nonexistent/unused.duckdb", lake=lake)
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", list(range(10)))},
                         fingerprints={"fp-a": ("sampler", {"a": 1})})
    wh.replace_partition("layers.1", 10, 19, {"latent_stats": _stats("layers.1", list(range(10, 20)))},
                         fingerprints={"fp-a": ("sampler", {"a": 1})})
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", [3, 4], status="dead")})
    assert wh.query("SELECT latent // 10 AS p, count(*) AS n, string_agg(DISTINCT status) AS s FROM latent_stats "
                    "GROUP BY 1 ORDER BY 1").rows() == [(0, 2, "dead"), (1, 10, "alive")]
    assert wh.query("SELECT fingerprint, kind FROM fingerprints").rows() == [("fp-a", "sampler")]  # once
    with wh.read() as con:
        names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_catalog = "
                                           "'lake'").fetchall()}
        assert set(TABLES) | set(VIEWS) <= names
        assert con.execute("SELECT count(*) FROM examples").fetchone()[0] == 0  # views run on the lake
    assert not list((lake_mod.Path(lake.data_path)).glob("*.duckdb"))  # no DuckDB file: Parquet under data_path
    assert list(lake_mod.Path(lake.data_path).rglob("*.parquet"))


def test_a_failed_partition_write_leaves_the_lake_as_it_was(lake):
    wh = Warehouse("/nonexistent/unused.duckdb", lake=lake)
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", list(range(10)))})
    with pytest.raises(duckdb.Error):
        wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", [1]).drop("status")})
    assert wh.scalar("SELECT count(*) FROM latent_stats") == 10


def test_a_write_that_conflicts_with_a_concurrent_commit_is_retried_not_surfaced(lake, monkeypatch):
    wh, other = Warehouse("/x/a.duckdb", lake=lake), Warehouse("/x/b.duckdb", lake=lake)
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", list(range(10)))})
    wh.replace_partition("layers.1", 10, 19, {"latent_stats": _stats("layers.1", list(range(10, 20)))})
    insert, interfered = Warehouse.insert, []

    def insert_after_another_host_commits(con, table, frame):
        if not interfered:  # between this transaction's start and its commit, another writer replaces 10-19
            interfered.append(1)
            other.replace_partition("layers.1", 10, 19, {"latent_stats": _stats("layers.1", [11], status="other")})
        return insert(con, table, frame)

    monkeypatch.setattr(Warehouse, "insert", staticmethod(insert_after_another_host_commits))
    with pytest.raises(duckdb.TransactionException, match="onflict"):  # without the retry, the commit fails
        with wh.write() as con:
            wh.delete_partition(con, "latent_stats", "layers.1", 0, 9)
            Warehouse.insert(con, "latent_stats", _stats("layers.1", [0], status="mine"))
    interfered.clear()
    counts = wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", [5, 6], status="mine")})
    assert counts == {"latent_stats": 2} and interfered == [1]
    assert wh.query("SELECT latent, status FROM latent_stats ORDER BY 1").rows() == [
        (5, "mine"), (6, "mine"), (11, "other")]


def test_stage_writes_of_processes_committing_at_once_are_retried_never_surfaced(lake):
    # the stages' own write blocks (Warehouse.attempts): DuckLake refuses an insert into a table another
    # transaction deleted from meanwhile -- two partitions' steps committing at once -- and the block runs again
    script = textwrap.dedent(f"""
        import logging, sys, polars as pl
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        from autointerp_assets.core.storage import Warehouse
        from autointerp_assets.core.storage.lake import Lake
        wh = Warehouse("/x/unused.duckdb", lake=Lake({lake.catalog!r}, {lake.data_path!r}))
        r = int(sys.argv[1])
        wh.init()
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(20):
            for attempt in wh.attempts():
                with attempt as con:
                    wh.delete_partition(con, "latent_stats", "layers.1", r * 10, r * 10 + 9)
                    wh.insert(con, "latent_stats", pl.DataFrame({{
                        "layer": "layers.1", "latent": list(range(r * 10, r * 10 + 10)), "n_firing": [i] * 10,
                        "n_windows": [1] * 10, "density": [0.1] * 10, "status": "alive", "activations_fp": "a"}}))
    """)
    logs = _at_once(script, [[str(r)] for r in range(3)])
    wh = Warehouse("/x/unused.duckdb", lake=lake)
    assert wh.query("SELECT latent // 10 AS r, count(*), min(n_firing), max(n_firing) FROM latent_stats "
                    "GROUP BY 1 ORDER BY 1").rows() == [(r, 10, 19, 19) for r in range(3)]
    assert sum(log.count("writing again") for log in logs) > 0, logs  # (they did conflict, and it was retried)


def test_writers_in_separate_processes_set_up_the_lake_and_all_commit_their_whole_partitions(lake):
    script = textwrap.dedent(f"""
        import polars as pl, sys
        from autointerp_assets.core.storage import Warehouse
        from autointerp_assets.core.storage.lake import Lake
        wh = Warehouse("/x/unused.duckdb", lake=Lake({lake.catalog!r}, {lake.data_path!r}))
        layer = sys.argv[1]
        sys.stdin.readline()  # all at once on an empty lake: they race to create the schema too
        for i in range(12):
            for first in (0, 10):
                n = 10 if i % 2 == 0 else 3
                wh.replace_partition(layer, first, first + 9, {{"latent_stats": pl.DataFrame({{
                    "layer": layer, "latent": list(range(first, first + n)), "n_firing": [1] * n,
                    "n_windows": [1] * n, "density": [0.1] * n, "status": f"round{{i}}",
                    "activations_fp": "a"}})}}, fingerprints={{f"fp{{i}}": ("k", {{"i": i}})}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, layer], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for layer in ("layers.1", "layers.2", "layers.3")]
    time.sleep(3)  # (every interpreter up and waiting)
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    wh = Warehouse("/x/unused.duckdb", lake=lake)
    assert wh.query("SELECT layer, latent // 10 AS p, count(*), min(status), max(status) FROM latent_stats "
                    "GROUP BY ALL ORDER BY ALL").rows() == [(f"layers.{k}", p, 3, "round11", "round11")
                                                            for k in (1, 2, 3) for p in (0, 1)]
    assert wh.scalar("SELECT count(*) FROM fingerprints") == 12


def test_writers_of_several_processes_recording_one_fingerprint_at_once_record_it_once(lake):
    # each round, every process records the same new fingerprint inside its own write transaction; unguarded, each
    # would see it absent in its snapshot and insert it (DuckLake merges concurrent inserts): rows doubled
    script = textwrap.dedent(f"""
        import sys
        from autointerp_assets.core.storage import Warehouse
        from autointerp_assets.core.storage.lake import Lake
        wh = Warehouse("/x/unused.duckdb", lake=Lake({lake.catalog!r}, {lake.data_path!r}))
        wh.init()
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(15):
            with wh.write() as con:
                wh.record_fingerprint(con, f"fp{{i}}", "k", {{"i": i}})
    """)
    _at_once(script, [[]] * 4)
    wh = Warehouse("/x/unused.duckdb", lake=lake)
    assert wh.query("SELECT fingerprint, count(*) AS n FROM fingerprints GROUP BY 1 HAVING n > 1").is_empty()
    assert wh.scalar("SELECT count(*) FROM fingerprints") == 15


def test_a_named_lock_has_one_holder_on_every_host_and_is_freed_when_its_holder_dies(lake):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from autointerp_assets.core.storage.lake import Lake
        with Lake({lake.catalog!r}, {lake.data_path!r}).lock("cache-x"):
            print("held", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    got = threading.Event()

    def take():
        with Lake(lake.catalog, lake.data_path).lock("cache-x"):
            got.set()

    with Lake(lake.catalog, lake.data_path).lock("cache-y"):  # another name: not held up
        pass
    t = threading.Thread(target=take, daemon=True)
    t.start()
    assert not got.wait(2.0)  # the other process holds it
    holder.kill()  # SIGKILL: no release of its own; its PostgreSQL session ends
    holder.wait(10)
    assert got.wait(10.0)
    t.join(5)


def test_an_analyst_sees_whole_partitions_and_never_holds_up_a_writer(lake):
    wh = Warehouse("/x/unused.duckdb", lake=lake)
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", list(range(10)))})
    analyst = lake.connect()
    analyst.begin()  # a long analysis: its transaction stays open across the writes below
    assert analyst.execute("SELECT count(*) FROM latent_stats").fetchone()[0] == 10
    seen, stop = [], threading.Event()

    def poll():  # a second analyst querying the lake all the while
        con = lake.connect()
        while not stop.is_set():
            seen.append(con.execute("SELECT count(*) FROM latent_stats").fetchone()[0])
            time.sleep(0.01)

    t = threading.Thread(target=poll)
    t.start()
    t0 = time.perf_counter()
    for i in range(10):
        wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", list(range(3 if i % 2 else 10)))})
    writes_s = time.perf_counter() - t0
    stop.set()
    t.join()
    assert analyst.execute("SELECT count(*) FROM latent_stats").fetchone()[0] == 10  # its snapshot, unchanged
    analyst.commit()
    assert analyst.execute("SELECT count(*) FROM latent_stats").fetchone()[0] == 3  # the latest, once it asks anew
    assert len(seen) > 5 and set(seen) <= {3, 10}, seen  # whole partitions only, never half of one
    assert writes_s < 30, writes_s  # (the writers went on while both analysts held the lake open)


def test_lake_settings_are_checked_with_the_fix(lake, monkeypatch):
    base = {"lake": {"catalog": "dbname=x host=127.0.0.1 password=secret", "data_path": "lake"}}
    with pytest.raises(ConfigError, match="PGPASSWORD"):
        parse_config(base)
    monkeypatch.setattr(lake_mod.duckdb, "__version__", "9.9.9")
    with pytest.raises(StorageError, match=r"built for DuckDB 1\.\d+\.\d+ but duckdb 9\.9\.9 is installed: pip install "
                                            r"duckdb==1\.\d+\.\d+"):
        lake_mod.extension_file(*lake_mod.EXTENSIONS[1])
    monkeypatch.undo()
    bad = Lake(lake.catalog.replace("port=", "port=1"), lake.data_path)  # nothing listens there
    with pytest.raises(StorageError, match="cannot open the lake .* start PostgreSQL or fix lake.catalog"):
        Warehouse("/x/unused.duckdb", lake=bad).scalar("SELECT 1")


def test_the_sql_door_reads_the_lake_and_refuses_writes_and_other_files(lake):
    from autointerp_assets.core.storage.sql_door import Refused, read_only_query

    wh = Warehouse("/x/unused.duckdb", lake=lake)
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", list(range(10)))})
    assert read_only_query(wh, "SELECT count(*) AS n FROM latent_stats").rows() == [(10,)]
    with pytest.raises(Refused, match=r"read-only .* attach the lake in any DuckDB client \(docs/scale_out.md\)"):
        read_only_query(wh, "DELETE FROM latent_stats")
    with pytest.raises(Refused, match="file access off"):
        read_only_query(wh, "SELECT * FROM read_text('/etc/hostname')")
    assert wh.scalar("SELECT count(*) FROM latent_stats") == 10


@pytest.fixture(scope="module")
def s3():
    with s3_server() as endpoint:
        yield endpoint


def test_a_lake_in_an_object_store_keeps_its_parquet_there_and_reads_back_exactly(pg, s3, monkeypatch):
    from autointerp_assets.core.storage.sql_door import Refused, read_only_query

    for name, value in KEYS.items():  # the credentials come from the environment only
        monkeypatch.setenv(name, value)
    create_bucket(s3, "lake")
    create_bucket(s3, "elsewhere")
    cfg = parse_config({"lake": {"catalog": create_database(pg, "lake_s3"), "data_path": "s3://lake/run-1",
                                 "object_store": {"endpoint": s3, "url_style": "path", "use_ssl": False}}})
    lake = Lake.of(cfg)
    assert lake.data_path == "s3://lake/run-1/"
    wh = Warehouse.of(cfg)
    for lo in (0, 10):
        wh.replace_partition("layers.1", lo, lo + 9, {"latent_stats": _stats("layers.1", list(range(lo, lo + 10)))},
                             fingerprints={"fp-a": ("sampler", {"a": 1})})
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", [3, 4], status="dead")})
    for attempt in wh.attempts():  # a stage's write block, as the assets write
        with attempt as con:
            con.execute("DELETE FROM latent_stats WHERE latent = 19")
    assert wh.query("SELECT latent, status FROM latent_stats ORDER BY latent").rows() == \
        [(3, "dead"), (4, "dead")] + [(i, "alive") for i in range(10, 19)]
    keys = object_keys(s3, "lake", "run-1/")
    assert any(k.startswith("run-1/main/latent_stats/") and k.endswith(".parquet") for k in keys), keys
    assert object_keys(s3, "elsewhere") == []

    # an analyst's read-only door: the lake's prefix readable, the rest of the store not
    assert read_only_query(wh, "SELECT count(*) AS n FROM latent_stats").rows() == [(11,)]
    with pytest.raises(Refused, match="file access off"):
        read_only_query(wh, "SELECT * FROM read_parquet('s3://elsewhere/*.parquet')")

    # what is wrong with the store is said in one line when the lake is opened, before any stage runs
    for store, why in [({"endpoint": s3, "url_style": "path", "use_ssl": False}, "NoSuchBucket"),
                       ({"endpoint": s3, "url_style": "vhost", "use_ssl": False}, "Could not resolve")]:
        bad = parse_config({"lake": {"catalog": cfg.lake.catalog, "data_path": "s3://nobucket/x/" if
                                     why == "NoSuchBucket" else "s3://lake/run-2/", "object_store": store}})
        with pytest.raises(StorageError, match=rf"cannot reach the lake's data at s3://.*{why}.*create the bucket, "
                                               r"check lake.object_store"):
            Lake.of(bad).connect()
    with pytest.raises(ConfigError, match="lake.object_store applies to an object store data_path"):
        parse_config({"lake": {"catalog": "dbname=x", "data_path": "lake", "object_store": {"endpoint": s3}}})
    with pytest.raises(ConfigError, match="is not a directory nor an object store URL"):
        parse_config({"lake": {"catalog": "dbname=x", "data_path": "ftp://host/lake"}})
