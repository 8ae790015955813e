"""Latent neighbours (similar latents) and the non-activating windows they give.

Two similarities, both sparse or blockwise, never a dense n_latents² matrix held at once:

- ``cooccurrence``: Jaccard over activating units, |A ∩ B| / |A ∪ B|, from a self-join of the
  range's activating units on (row, window) in SQL: only pairs that actually co-occur produce rows.
- ``decoder``: cosine of the SAE's decoder rows (``W_dec``), in blocks of query latents.

Neighbours are searched among the latents of the same partition (latent range), so a partition
depends only on its own upstream partition; a wider range gives a wider search.

Neighbour negatives: for each neighbour in similarity order, its ``windows_per_neighbour`` strongest
units in which this latent does not fire, until ``n_non_activating`` are collected.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import torch

from ..config import SamplerConfig


def cooccurrence_sql(n_neighbours: int) -> str:
    """Temp table ``_neighbours`` (latent, neighbour, similarity, rank) for the selected latents."""
    return f"""
    CREATE OR REPLACE TEMP TABLE _neighbours AS
        WITH n AS (SELECT latent, count(*)::DOUBLE AS n FROM _wins GROUP BY latent),
        src AS (SELECT w.latent, w.row_id, w.win FROM _wins w JOIN _selection s USING (latent)
                WHERE s.status = 'selected'),
        pairs AS (
            SELECT a.latent, b.latent AS neighbour, count(*) AS c
            FROM src a JOIN _wins b ON a.row_id = b.row_id AND a.win = b.win AND a.latent <> b.latent
            GROUP BY ALL
        ), jac AS (
            SELECT p.latent, p.neighbour, p.c / (na.n + nb.n - p.c) AS similarity
            FROM pairs p JOIN n na ON na.latent = p.latent JOIN n nb ON nb.latent = p.neighbour
        )
        SELECT latent, neighbour, similarity::REAL AS similarity,
               row_number() OVER (PARTITION BY latent ORDER BY similarity DESC, neighbour)::INTEGER AS rank
        FROM jac
        QUALIFY rank <= {n_neighbours};
    """


def decoder_neighbours(w_dec: torch.Tensor, first: int, latents: list[int], n_neighbours: int,
                       block: int = 1024) -> pl.DataFrame:
    """Top-n decoder-cosine neighbours of ``latents`` among the rows of ``w_dec`` (latents first, first+1, …).

    Blockwise: at most ``block`` × len(w_dec) similarities exist at once.
    """
    w = torch.nn.functional.normalize(w_dec.detach().float(), dim=1)
    m = w.shape[0]
    k = min(n_neighbours, m - 1)
    out = {"latent": [], "neighbour": [], "similarity": [], "rank": []}
    idx = torch.tensor(latents, dtype=torch.long) - first
    if k <= 0 or len(idx) == 0:
        return pl.DataFrame(out, schema={"latent": pl.Int32, "neighbour": pl.Int32, "similarity": pl.Float32,
                                         "rank": pl.Int32})
    for i in range(0, len(idx), block):
        q = idx[i:i + block]
        sim = w[q] @ w.T
        sim[torch.arange(len(q)), q] = -float("inf")  # a latent is not its own neighbour
        val, nb = sim.topk(k, dim=1)  # sorted, descending
        out["latent"].append((q + first).repeat_interleave(k))
        out["neighbour"].append((nb + first).flatten())
        out["similarity"].append(val.flatten())
        out["rank"].append(torch.arange(1, k + 1).repeat(len(q)))
    return pl.DataFrame({"latent": torch.cat(out["latent"]).numpy().astype("int32"),
                         "neighbour": torch.cat(out["neighbour"]).numpy().astype("int32"),
                         "similarity": torch.cat(out["similarity"]).numpy().astype("float32"),
                         "rank": torch.cat(out["rank"]).numpy().astype("int32")})


def neighbour_negatives_sql(cfg: SamplerConfig) -> str:
    """Temp table ``_neg_primary`` from ``_neighbours``: neighbours' strongest units where the latent is silent."""
    return f"""
    CREATE OR REPLACE TEMP TABLE _neg_primary AS
        WITH cand AS (
            SELECT nb.latent, nb.neighbour, nb.similarity, nb.rank, w.row_id, w.win, w.max_act
            FROM _neighbours nb JOIN _wins w ON w.latent = nb.neighbour
            WHERE NOT EXISTS (SELECT 1 FROM _wins x WHERE x.latent = nb.latent
                              AND x.row_id = w.row_id AND x.win = w.win)
            QUALIFY row_number() OVER (PARTITION BY nb.latent, nb.neighbour
                                       ORDER BY w.max_act DESC, w.row_id, w.win) <= {cfg.windows_per_neighbour}
        )
        SELECT latent, row_id, win, neighbour, similarity,
               row_number() OVER (PARTITION BY latent ORDER BY rank, max_act DESC, row_id, win) AS ord
        FROM cand;
    """


def decoder_rows(checkpoint: str | Path, first: int, last: int) -> torch.Tensor:
    """``W_dec[first..last]`` ([n, d_in]) read straight from a checkpoint dir (sparsify ``sae.safetensors``,
    SAELens ``sae_weights.safetensors``, Gemma Scope ``params.npz``), slicing only those rows."""
    d = Path(checkpoint)
    for name in ("sae.safetensors", "sae_weights.safetensors"):
        if (d / name).exists():
            from safetensors import safe_open

            with safe_open(str(d / name), "pt") as st:
                if "W_dec" in st.keys():
                    return st.get_slice("W_dec")[first:last + 1].float()
    if (d / "params.npz").exists():
        import numpy as np

        with np.load(d / "params.npz") as z:
            return torch.from_numpy(np.asarray(z["W_dec"][first:last + 1], dtype=np.float32))
    raise ValueError(f"no decoder weights (W_dec) in {d}: use sampler.neighbour_type 'cooccurrence' for this "
                     f"sparse coder")
