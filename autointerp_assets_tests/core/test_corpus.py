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


def test_plain_text_streams_paragraphs_through_a_bounded_shuffle(tmp_path, tok):
    paras = [f"Paragraph {i} is about topic {i % 7}.\nIt has a second line." for i in range(30_000)]
    path = tmp_path / "big.txt"
    path.write_text("\n\n\n".join(paras) + "\n")
    cfg = CorpusConfig(source=str(path), n_tokens=32 * 4, ctx_len=32)
    docs = corpus.iter_documents(cfg)
    rows = corpus.pack_rows(docs, tok, 32, 4, corpus.bos_id(cfg, tok))
    assert next(docs, None) is not None  # stopped at n_tokens: the rest of the file was never needed
    every = list(corpus.iter_documents(cfg))
    assert sorted(every) == sorted(p + "\n" for p in paras)  # one document per paragraph, none lost
    assert every != [p + "\n" for p in paras] and every == list(corpus.iter_documents(cfg))  # shuffled, seeded
    assert every != list(corpus.iter_documents(CorpusConfig(source=str(path), seed=1)))
    text = tok.decode(rows[:, 1:].ravel())
    assert "Paragraph" in text and (rows[:, 0] == corpus.bos_id(cfg, tok)).all()


def test_shuffle_buffer_holds_at_most_its_size():
    held = []

    def source(n):
        for i in range(n):
            held.append(i)
            yield str(i)

    out = corpus.shuffled(source(1000), seed=3, size=10)
    first = [next(out) for _ in range(5)]
    assert len(held) == 15  # 10 in the buffer + one read per document given out
    assert all(int(d) < 15 for d in first)
    rest = list(out)
    assert sorted(int(d) for d in first + rest) == list(range(1000))
    assert [int(d) for d in first + rest] != list(range(1000))


def test_long_documents_are_cut_at_whitespace(tmp_path):
    words = " ".join(f"w{i}" for i in range(20_000))  # ~130k characters on one line
    (tmp_path / "one.txt").write_text(words)
    (tmp_path / "nospace.jsonl").write_text(json.dumps({"text": "x" * 40_000}) + "\n")
    docs = list(corpus.iter_documents(CorpusConfig(source=str(tmp_path))))
    assert all(len(d) <= corpus.MAX_DOC_CHARS for d in docs)
    assert "".join(d for d in docs if d.startswith("x")) == "x" * 40_000
    spoken = sorted((d for d in docs if d.startswith("w") or " w" in d), key=lambda d: int(d.split()[0][1:]))
    assert "".join(spoken) == words and all(d.endswith(" ") for d in spoken[:-1])  # cut after a space


def test_local_reader_is_part_of_the_corpus_fingerprint(tmp_path):
    """Rows of a local source changed with the streaming reader: its fingerprint changed with them, so a
    warehouse of the old rows is recomputed, never mixed; cpython's rows and fingerprint did not change."""
    from autointerp_assets.core.config import ProjectConfig
    from autointerp_assets.core.identity import corpus_spec

    local = ProjectConfig(corpus={"source": str(tmp_path / "c.txt")})
    spec = corpus_spec(local, DATA)
    assert spec["reader"] == corpus.LOCAL_READER and set(spec) == {"corpus", "tokenizer", "reader"}
    assert set(corpus_spec(ProjectConfig(), DATA)) == {"corpus", "tokenizer"}
    assert "reader" not in corpus_spec(ProjectConfig(corpus={"source": "hf:x"}), DATA)
