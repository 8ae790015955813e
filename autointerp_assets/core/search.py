"""Semantic search over explanations: rank latents by the cosine similarity of their explanation's sentence
embedding to a query's (all-MiniLM-L6-v2 offline, the model the embedding negatives and scorer use).

Explanation embeddings are stored per partition in ``explanation_embeddings`` (written with the latent
browser's pages) and in the site's ``search.npz`` files (what ``autointerp browse`` searches, without
opening the warehouse). ``autointerp search`` reads the stored ones and embeds any explanation that has
none yet in memory, so it works on any warehouse and never writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from .sampling.embeddings import load_embedder, model_key
from .storage import queries


def embed(model_name: str, texts: list[str]) -> np.ndarray:
    """Unit-norm sentence embeddings, float32 [len(texts), dim]."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    vecs = load_embedder(model_name).encode(list(texts), batch_size=64, convert_to_numpy=True,
                                            normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float32)


def explanation_vectors(wh, model_name: str, layer: str | None = None, first: int = 0,
                        last: int = 2**31 - 1) -> tuple[pl.DataFrame, np.ndarray, int]:
    """(rows layer/latent/explainer_fp/explanation, their unit embeddings, how many were embedded now)."""
    with wh.read() as con:
        frame = con.execute(queries.EXPLANATION_EMBEDDINGS, {"model": model_key(model_name), "layer": layer,
                                                             "first": first, "last": last}).pl()
    if frame.is_empty():
        return frame.drop("embedding"), np.zeros((0, 0), dtype=np.float32), 0
    missing = [i for i, e in enumerate(frame["embedding"].to_list()) if e is None]
    fresh = embed(model_name, [frame["explanation"][i] for i in missing]) if missing else None
    dim = fresh.shape[1] if fresh is not None else len(next(e for e in frame["embedding"] if e is not None))
    mat = np.zeros((frame.height, dim), dtype=np.float32)
    for i, e in enumerate(frame["embedding"].to_list()):
        if e is not None:
            mat[i] = e
    if missing:
        mat[missing] = fresh
    return frame.drop("embedding"), mat, len(missing)


def partition_embeddings(wh, model_name: str, layer: str, first: int, last: int) -> pl.DataFrame:
    """Rows for table ``explanation_embeddings`` of one partition (every ok explanation, every explainer)."""
    frame, mat, _ = explanation_vectors(wh, model_name, layer, first, last)
    return pl.DataFrame({"layer": frame["layer"], "latent": frame["latent"], "explainer_fp": frame["explainer_fp"],
                         "model": [model_key(model_name)] * frame.height, "embedding": mat.tolist()},
                        schema_overrides={"embedding": pl.List(pl.Float32)})


def rank(query: np.ndarray, mat: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the ``k`` rows of ``mat`` nearest to ``query`` (both unit norm)."""
    if mat.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    sims = mat @ query.reshape(-1)
    k = min(k, len(sims))
    idx = np.argpartition(-sims, k - 1)[:k]
    idx = idx[np.argsort(-sims[idx], kind="stable")]
    return idx, sims[idx]


def search(wh, model_name: str, query: str, k: int = 10, layer: str | None = None) -> pl.DataFrame:
    """The ``k`` explanations nearest to ``query``: rank, similarity, layer, latent, explainer_fp, explanation."""
    frame, mat, _ = explanation_vectors(wh, model_name, layer)
    idx, sims = rank(embed(model_name, [query])[0], mat, k)
    return frame[idx.tolist()].select(
        pl.Series("rank", np.arange(1, len(idx) + 1, dtype=np.int32)), pl.Series("similarity", sims.astype(np.float64)),
        "layer", "latent", "explainer_fp", "explanation")


def save_npz(path: str | Path, frame: pl.DataFrame) -> None:
    """A partition's embeddings for the browser's search (``frame`` from ``partition_embeddings``)."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    emb = np.asarray(frame["embedding"].to_list(), dtype=np.float32) if frame.height else np.zeros((0, 0), np.float32)
    np.savez(tmp, layer=np.asarray(frame["layer"].to_list(), dtype=str), latent=frame["latent"].to_numpy(),
             explainer_fp=np.asarray(frame["explainer_fp"].to_list(), dtype=str), embedding=emb)
    os.replace(tmp, path)


class SiteIndex:
    """Every ``search.npz`` under a browser site, reloaded when one changes (what ``/api/search`` ranks)."""

    def __init__(self, root: str | Path, model_name: str):
        self.root, self.model_name = Path(root), model_name
        self._stamp: tuple = ()
        self.keys: list[tuple[str, int, str]] = []
        self.mat = np.zeros((0, 0), dtype=np.float32)

    def _load(self) -> None:
        files = sorted(self.root.glob("*/*/search.npz"))
        stamp = tuple((str(f), f.stat().st_mtime_ns) for f in files)
        if stamp == self._stamp:
            return
        keys, mats = [], []
        for f in files:
            with np.load(f) as z:
                if len(z["latent"]) and z["embedding"].size:
                    keys += list(zip(z["layer"].tolist(), z["latent"].tolist(), z["explainer_fp"].tolist()))
                    mats.append(z["embedding"])
        self.keys, self.mat = keys, (np.concatenate(mats) if mats else np.zeros((0, 0), dtype=np.float32))
        self._stamp = stamp

    def query(self, text: str, k: int = 50) -> list[dict]:
        self._load()
        idx, sims = rank(embed(self.model_name, [text])[0], self.mat, k)
        return [{"layer": self.keys[i][0], "latent": int(self.keys[i][1]), "explainer_fp": self.keys[i][2],
                 "similarity": round(float(s), 4)} for i, s in zip(idx.tolist(), sims.tolist())]
