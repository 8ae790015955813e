"""Corpus sources and packing into fixed-length token rows.

Sources: ``cpython`` (the English that ships with Python: pydoc topics + stdlib docstrings, no
download), local ``.txt`` / ``.jsonl`` / ``.parquet`` files or directories of them, and
``hf:<dataset>[:<config>]`` streamed from the Hugging Face Hub. Documents are shuffled with the seed,
tokenized without special tokens and packed GPT-style: every row is ``[BOS] + ctx_len-1 tokens``,
with BOS also separating documents inside a row.
"""

from __future__ import annotations

import ast
import json
import random
import sysconfig
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .config import CorpusConfig

_TEXT_SUFFIXES = {".txt", ".md", ".rst", ".jsonl", ".parquet"}


class CorpusError(ValueError):
    pass


def cpython_documents() -> list[str]:
    """pydoc topic pages + docstrings of the pure-Python stdlib (tests excluded), in a fixed order."""
    from pydoc_data.topics import topics

    docs = [topics[k] for k in sorted(topics)]
    lib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(lib.rglob("*.py")):
        rel = path.relative_to(lib).parts
        if rel[0] in ("site-packages", "test", "idlelib", "lib2to3") or "tests" in rel or "test" in rel:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:  # one-liners add little language
                    docs.append(doc)
    return list(dict.fromkeys(docs))  # de-duplicate, keep order


def decode_line(path: Path, i: int, raw: bytes) -> str:
    """Line ``i`` (1-based) of a corpus file as text; a byte that is not UTF-8 is a one-line error naming it."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"corpus file {path} line {i} is not UTF-8 (byte 0x{raw[e.start]:02x} at column "
                          f"{e.start + 1}): convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8) or "
                          "remove it") from None


def jsonl_text(path: Path, i: int, line: str, column: str) -> str:
    """The text of JSONL line ``i``; a malformed line or a missing column is a one-line error naming it."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise CorpusError(f"corpus file {path} line {i} is not valid JSON ({e.msg} at column {e.colno}): "
                          "fix or remove that line (one JSON object per line)") from None
    if not isinstance(rec, dict) or column not in rec:
        raise CorpusError(f"{path}:{i} has no '{column}' field: set corpus.text_column")
    return str(rec[column])


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file."""
    with path.open("rb") as f:
        for i, raw in enumerate(f, 1):
            yield i, decode_line(path, i, raw)


def _file_documents(path: Path, column: str) -> Iterator[str]:
    if path.suffix == ".jsonl":
        for i, line in _lines(path):
            if line.strip():
                yield jsonl_text(path, i, line, column)
    elif path.suffix == ".parquet":
        import polars as pl

        try:
            frame = pl.read_parquet(path)
        except Exception as e:
            raise CorpusError(f"corpus file {path} is not a readable parquet file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:120]}): re-export it or remove it") from None
        if column not in frame.columns:
            raise CorpusError(f"{path} has no column '{column}' (has {frame.columns}): set corpus.text_column")
        yield from (str(t) for t in frame[column].to_list())
    else:  # plain text: one document per file
        yield "".join(line for _, line in _lines(path))


def iter_documents(cfg: CorpusConfig, root: Path | None = None) -> Iterator[str]:
    """``root``: what a relative local ``source`` is relative to (the project root; default the working dir)."""
    src = cfg.source
    if src == "cpython":
        docs = cpython_documents()
        random.Random(cfg.seed).shuffle(docs)
        yield from docs
        return
    if src.startswith("hf:"):
        name, _, subset = src[3:].partition(":")
        try:
            import datasets
        except ImportError:
            raise CorpusError("hf: corpora need the `datasets` package: pip install datasets") from None
        ds = datasets.load_dataset(name, subset or None, split=cfg.split, streaming=True)
        ds = ds.shuffle(seed=cfg.seed, buffer_size=10_000)
        for rec in ds:
            yield str(rec[cfg.text_column])
        return
    path = Path(src).expanduser()
    if root is not None and not path.is_absolute():
        path = root / path
    if not path.exists():
        raise CorpusError(f"corpus.source {src!r} is neither 'cpython', 'hf:<name>' nor an existing path ({path}): "
                          "fix it")
    files = sorted(p for p in path.rglob("*") if p.suffix in _TEXT_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise CorpusError(f"corpus directory {path} holds no .txt/.md/.rst/.jsonl/.parquet files")
    docs = [d for f in files for d in _file_documents(f, cfg.text_column)]
    random.Random(cfg.seed).shuffle(docs)
    yield from docs


def bos_id(cfg: CorpusConfig, tokenizer) -> int:
    if cfg.bos_token is None:
        if tokenizer.bos_token_id is None:
            raise CorpusError("the tokenizer has no bos_token: set corpus.bos_token in the config")
        return int(tokenizer.bos_token_id)
    tid = tokenizer.convert_tokens_to_ids(cfg.bos_token)
    if tid is None or (tid == tokenizer.unk_token_id and cfg.bos_token != tokenizer.unk_token):
        raise CorpusError(f"corpus.bos_token {cfg.bos_token!r} is not a token of this tokenizer: fix or set it to null")
    return int(tid)


def pack_rows(docs: Iterable[str], tokenizer, ctx_len: int, n_rows: int, bos: int,
              docs_per_call: int = 64) -> np.ndarray:
    """[n_rows, ctx_len] int32 token ids; each row starts with BOS; stops as soon as enough tokens exist."""
    need = n_rows * (ctx_len - 1)
    stream: list[int] = []
    batch: list[str] = []

    def flush():
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            stream.append(bos)
            stream.extend(ids)
        batch.clear()

    for doc in docs:
        batch.append(doc)
        if len(batch) >= docs_per_call:
            flush()
            if len(stream) >= need:
                break
    if batch and len(stream) < need:
        flush()
    if len(stream) < need:
        have = len(stream) // (ctx_len - 1)
        raise CorpusError(f"the corpus gives only {len(stream)} tokens ({have} rows of {ctx_len}) but "
                          f"corpus.n_tokens asks for {n_rows * ctx_len}: lower n_tokens or use a larger corpus")
    body = np.asarray(stream[:need], dtype=np.int32).reshape(n_rows, ctx_len - 1)
    return np.concatenate([np.full((n_rows, 1), bos, dtype=np.int32), body], axis=1)
