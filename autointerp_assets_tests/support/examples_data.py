"""Hand-built `tokens` + `activations` written into a real DuckDB warehouse, for the examples tests.

Activations are written the way the warehouse stores them: into a table `activations` where it is
one, or into the compact `activation_cache` + `activation_partitions` behind the `activations` view.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from autointerp_assets.core.storage import Warehouse

CORPUS = "corpus-test"
AFP = "activations-test"


def write_tokens(wh: Warehouse, rows: list[list[int]]) -> None:
    with wh.write() as con:
        con.execute("DELETE FROM tokens WHERE corpus_fp = ?", [CORPUS])
        wh.insert(con, "tokens", pl.DataFrame({"corpus_fp": CORPUS, "row_id": np.arange(len(rows), dtype=np.int32),
                                               "token_ids": rows}, schema_overrides={"token_ids": pl.List(pl.Int32)}))


def write_activations(wh: Warehouse, layer: str, first: int, last: int, ctx_len: int,
                      acts: list[tuple[int, int, int, float]]) -> None:
    """acts: (latent, row_id, pos, value); values should be exact in float16."""
    lat, row, pos, val = (np.array(c) for c in zip(*acts)) if acts else ([],) * 4
    with wh.write() as con:
        con.execute("DELETE FROM activation_cache WHERE layer = ?", [layer])
        con.execute("DELETE FROM activation_partitions WHERE layer = ?", [layer])
        wh.insert(con, "activation_cache", pl.DataFrame({
            "cache_fp": "cache-test", "layer": layer, "latent": lat.astype(np.int32),
            "token": (row * ctx_len + pos).astype(np.int32),
            "value_bits": val.astype(np.float16).view(np.uint16)}))
        wh.insert(con, "activation_partitions", pl.DataFrame({
            "layer": [layer], "first_latent": [first], "last_latent": [last], "cache_fp": ["cache-test"],
            "activations_fp": [AFP], "ctx_len": [ctx_len], "n_nonzero": [len(acts)]}))
