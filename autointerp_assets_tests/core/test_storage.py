"""The warehouse: partition-exact replacement in one transaction, inserts by name, schema upgrades."""

import duckdb
import polars as pl
import pytest

from autointerp_assets.core.storage import Warehouse


def _stats(layer, latents, status="alive"):
    return pl.DataFrame({"layer": layer, "latent": latents, "n_firing": [1] * len(latents),
                         "n_windows": [1] * len(latents), "density": [0.1] * len(latents),
                         "status": status, "activations_fp": "activations-x"})


def test_replace_partition_touches_only_its_rows(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", list(range(10)))})
    wh.replace_partition("layers.1", 10, 19, {"latent_stats": _stats("layers.1", list(range(10, 20)))})
    wh.replace_partition("layers.2", 0, 9, {"latent_stats": _stats("layers.2", list(range(10)))})
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", [3, 4], status="dead")})
    got = wh.query("SELECT layer, count(*) AS n, string_agg(DISTINCT status) AS s FROM latent_stats "
                   "GROUP BY layer, latent // 10 ORDER BY ALL").rows()
    assert got == [("layers.1", 2, "dead"), ("layers.1", 10, "alive"), ("layers.2", 10, "alive")]


def test_failed_write_rolls_back_the_delete(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", list(range(10)))})
    bad = _stats("layers.1", [1]).drop("status")  # NOT NULL column missing -> the insert fails
    with pytest.raises(duckdb.Error):
        wh.replace_partition("layers.1", 0, 9, {"latent_stats": bad})
    assert wh.scalar("SELECT count(*) FROM latent_stats") == 10  # old rows survive, lock released
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": _stats("layers.1", [0])})
    assert wh.scalar("SELECT count(*) FROM latent_stats") == 1


def test_insert_is_by_name_not_position(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    frame = _stats("layers.1", [7]).select(["status", "latent", "activations_fp", "density", "n_windows",
                                            "n_firing", "layer"])
    wh.replace_partition("layers.1", 0, 9, {"latent_stats": frame})
    assert wh.query("SELECT layer, latent, status FROM latent_stats").rows() == [("layers.1", 7, "alive")]


def test_a_small_insert_runs_on_one_thread_and_gives_the_connection_its_threads_back(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.write() as con:
        con.execute("SET threads = 3")
        assert wh.insert(con, "latent_stats", _stats("layers.1", list(range(10)))) == 10  # small: one thread
        assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 3
    assert wh.scalar("SELECT count(*) FROM latent_stats") == 10
    with pytest.raises(duckdb.ConstraintException, match="status"):  # a failed insert shows its own error
        with wh.write() as con:
            wh.insert(con, "latent_stats", _stats("layers.2", [1]).with_columns(status=pl.lit(None, pl.Utf8)))


def test_older_database_gains_new_columns(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE latent_selection (layer VARCHAR, latent INTEGER, status VARCHAR)")
    con.execute("INSERT INTO latent_selection VALUES ('layers.1', 1, 'selected')")
    con.execute("CREATE TABLE activation_batches (cache_fp VARCHAR, token INTEGER)")  # retired since cache v3
    con.close()
    wh = Warehouse(path)
    cols = wh.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'latent_selection'")
    assert {"n_windows", "sampler_fp"} <= set(cols["column_name"])
    assert wh.scalar("SELECT count(*) FROM latent_selection") == 1
    assert wh.scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'activation_batches'") == 0


def test_examples_with_copied_tokens_become_windows_and_read_back_the_same(tmp_path):
    """A database from before example_windows (table `examples` with token_ids / acts per row) keeps its rows:
    the corpus is found by the tokens, the activations by the sampler's fingerprint, and the `examples` view
    returns exactly the old token ids and acts."""
    from autointerp_assets_tests.support.examples_data import AFP, CORPUS, write_activations, write_tokens

    path = tmp_path / "old.duckdb"
    wh = Warehouse(path)
    write_tokens(wh, [[0] + list(range(100, 116)), [0] + list(range(200, 216))])
    write_activations(wh, "L", 0, 9, 17, [(3, 1, 5, 1.5), (3, 1, 7, 0.25), (4, 0, 2, 2.0)])
    with wh.write() as con:
        con.execute("INSERT INTO fingerprints VALUES ('sampler-old', 'sampler', ?, DEFAULT)",
                    [f'{{"activations_fp": "{AFP}"}}'])
    con = duckdb.connect(str(path))
    con.execute("DROP VIEW examples")
    con.execute("DROP TABLE example_windows")
    con.execute("CREATE TABLE examples (layer VARCHAR, latent INTEGER, split VARCHAR, example_id INTEGER, "
                "quantile SMALLINT, row_id INTEGER, start_pos SMALLINT, max_activation REAL, token_ids INTEGER[], "
                "acts REAL[], sampler_fp VARCHAR)")
    old = [("L", 3, "train", 5, 0, 1, 5, 1.5, list(range(204, 208)), [1.5, 0.0, 0.25, 0.0], "sampler-old"),
           ("L", 4, "test", 0, 1, 0, 1, 2.0, list(range(100, 104)), [0.0, 2.0, 0.0, 0.0], "sampler-old"),
           ("L", 4, "non_activating", 9, -1, 1, 9, 0.0, list(range(208, 212)), [0.0] * 4, "sampler-old")]
    con.executemany("INSERT INTO examples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", old)
    con.close()
    import autointerp_assets.core.storage.warehouse as w
    w._SCHEMA_READY.clear()  # this process created the file: make it check the schema again
    wh = Warehouse(path)
    assert wh.scalar("SELECT count(*) FROM example_windows WHERE corpus_fp = ? AND activations_fp = ? "
                     "AND length = 4", [CORPUS, AFP]) == 3
    got = wh.query("SELECT layer, latent, split, example_id, quantile, row_id, start_pos, max_activation, token_ids, "
                   "acts, sampler_fp FROM examples ORDER BY latent, split").rows()
    assert got == sorted(tuple(r) for r in old)
