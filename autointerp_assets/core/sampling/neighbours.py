"""Latent neighbours (similar latents) and the non-activating windows they give.

Two similarities, both sparse or blockwise, never a dense n_latents² matrix held at once:

- ``cooccurrence``: Jaccard over activating units, |A ∩ B| / |A ∪ B|, from a sparse product of the
  latents × windows incidence matrix: only pairs that actually co-occur produce entries.
- ``decoder``: cosine of the SAE's decoder rows (``W_dec``), in blocks of query latents.

Neighbours are searched among the latents of the same partition (latent range), so a partition
depends only on its own upstream partition; a wider range gives a wider search.

Neighbour negatives: for each neighbour in similarity order, its strongest units in which this
latent does not fire (up to ``windows_per_neighbour``), until ``n_non_activating`` (+ the explainer's
``n_train_non_activating``) are collected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from ..config import SamplerConfig
from ..storage import queries


def cooccurrence_neighbours(latent: np.ndarray, window: np.ndarray, selected: np.ndarray, n_neighbours: int,
                            block: int = 2048) -> pl.DataFrame:
    """Top-n Jaccard neighbours of the ``selected`` latents over the range's activating units
    (one (latent, window id) pair per unit).

    A sparse latents × windows incidence matrix A; co-occurrence counts are the sparse product
    A[selected] · Aᵀ, so only pairs that actually co-occur exist, ``block`` query latents at a time.
    (The same join-and-count in SQL took 10 s on the offline default range, where the sparse product
    takes well under one: the pairs are many and DuckDB's hash aggregate pays per pair.)
    """
    from scipy import sparse

    selected = np.asarray(selected, dtype=np.int64)
    if len(selected) == 0 or len(latent) == 0:
        return _empty()
    lat_ids, lat_idx = np.unique(np.asarray(latent, dtype=np.int64), return_inverse=True)
    wid = np.asarray(window, dtype=np.int64)
    uniq_w, w_idx = np.unique(wid, return_inverse=True)
    a = sparse.csr_matrix((np.ones(len(wid), dtype=np.float32), (lat_idx, w_idx)), shape=(len(lat_ids), len(uniq_w)))
    n = np.asarray(a.sum(axis=1)).ravel()
    at = a.T.tocsr()
    rows_of = np.searchsorted(lat_ids, selected)
    parts = []
    for i in range(0, len(rows_of), block):
        q = rows_of[i:i + block]
        c = (a[q] @ at).tocoo()
        r, col, cnt = c.row, c.col, c.data
        keep = q[r] != col  # a latent is not its own neighbour
        r, col, cnt = r[keep], col[keep], cnt[keep]
        jac = cnt / (n[q[r]] + n[col] - cnt)
        order = np.lexsort((lat_ids[col], -jac, r))  # per query: similarity desc, then neighbour id
        r, col, jac = r[order], col[order], jac[order]
        rank = np.arange(len(r)) - np.searchsorted(r, r, side="left") + 1
        top = rank <= n_neighbours
        parts.append(pl.DataFrame({"latent": lat_ids[q[r[top]]].astype(np.int32),
                                   "neighbour": lat_ids[col[top]].astype(np.int32),
                                   "similarity": jac[top].astype(np.float32), "rank": rank[top].astype(np.int32)}))
    return pl.concat(parts)


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema={"latent": pl.Int32, "neighbour": pl.Int32, "similarity": pl.Float32, "rank": pl.Int32})


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
        return _empty()
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


def neighbour_negatives(con, cfg: SamplerConfig, n: int) -> None:
    """Temp table ``_neg_primary`` from ``_neighbours`` / ``_wins`` / ``_selection``: per neighbour in rank
    order, its strongest windows where the latent is silent (at most ``windows_per_neighbour``), until
    ``n`` (the scorers' and the explainer's negatives) per latent.

    Exact, with bounded work: neighbours are taken in rounds of doubling rank width (first just enough
    to fill ``n_non_activating`` if each gives its share), each round in one SQL statement over every
    latent still short, so most latents touch only their first few neighbours' windows.
    """
    k = cfg.windows_per_neighbour
    con.execute(queries.CREATE_NEG_PRIMARY)
    max_rank = con.execute(queries.NEIGHBOURS_MAX_RANK).fetchone()[0]
    lo, width = 1, max(1, -(-n // k))
    while lo <= max_rank:
        hi = lo + width - 1
        con.execute(queries.NEIGHBOUR_NEGATIVES_ROUND, [n, lo, hi, k])
        lo, width = hi + 1, width * 2


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
