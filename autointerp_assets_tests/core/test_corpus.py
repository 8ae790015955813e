"""Corpus sources pack into BOS-first rows; bad sources fail with a one-line fix."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from transformers import AutoTokenizer

from autointerp_assets.core import corpus
from autointerp_assets.core.config import CorpusConfig
from autointerp_assets.core.subject_model import resolve_model

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(resolve_model("smollm2", DATA))


def test_cpython_rows_start_with_bos_and_are_reproducible(tok):
    cfg = CorpusConfig(n_tokens=64 * 8, ctx_len=64)
    bos = corpus.bos_id(cfg, tok)
    rows = corpus.pack_rows(corpus.iter_documents(cfg), tok, 64, 8, bos)
    assert rows.shape == (8, 64) and rows.dtype == np.int32
    assert (rows[:, 0] == bos).all() and bos == tok.convert_tokens_to_ids("<|endoftext|>")
    again = corpus.pack_rows(corpus.iter_documents(cfg), tok, 64, 8, bos)
    assert (rows == again).all()
    other = corpus.pack_rows(corpus.iter_documents(CorpusConfig(seed=1)), tok, 64, 8, bos)
    assert not (rows == other).all()


@pytest.mark.parametrize("kind", ["txt", "jsonl", "parquet"])
def test_local_files(tmp_path, tok, kind):
    texts = [f"Document number {i} talks about apples and pears in some detail." for i in range(40)]
    path = tmp_path / f"c.{kind}"
    if kind == "txt":
        path.write_text("\n\n".join(texts))
    elif kind == "jsonl":
        path.write_text("\n".join(json.dumps({"body": t}) for t in texts))
    else:
        pl.DataFrame({"body": texts}).write_parquet(path)
    cfg = CorpusConfig(source=str(path), text_column="body", n_tokens=32 * 4, ctx_len=32)
    rows = corpus.pack_rows(corpus.iter_documents(cfg), tok, 32, 4, corpus.bos_id(cfg, tok))
    text = tok.decode(rows[:, 1:].ravel())
    assert "apples and pears" in text


def test_errors_name_the_fix(tmp_path, tok):
    with pytest.raises(corpus.CorpusError, match="neither 'cpython'"):
        list(corpus.iter_documents(CorpusConfig(source=str(tmp_path / "missing.txt"))))
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(corpus.CorpusError, match="text_column"):
        list(corpus.iter_documents(CorpusConfig(source=str(p), text_column="body")))
    small = CorpusConfig(source=str(p))
    with pytest.raises(corpus.CorpusError, match="lower n_tokens"):
        corpus.pack_rows(corpus.iter_documents(small), tok, 32, 10, corpus.bos_id(small, tok))
    with pytest.raises(corpus.CorpusError, match="bos_token"):
        corpus.bos_id(CorpusConfig(bos_token="<not-a-token>"), tok)
