"""Corpus sources and packing into fixed-length token rows.

Sources: ``cpython`` (the English that ships with Python: pydoc topics + stdlib docstrings, no
download), local ``.txt`` / ``.jsonl`` / ``.parquet`` files or directories of them, and
``hf:<dataset>[:<config>]`` streamed from the Hugging Face Hub. Documents are shuffled with the seed,
tokenized without special tokens and packed GPT-style: every row is ``[BOS] + ctx_len-1 tokens``,
with BOS also separating documents inside a row.

Local files stream: plain text is split into paragraphs (blank lines end a document), every local document
is cut into pieces of at most ``MAX_DOC_CHARS`` characters at whitespace, files are visited in a seeded
order and documents pass through a bounded shuffle buffer of ``SHUFFLE_BUFFER`` documents (as hub datasets
do), so memory is bounded by these constants and reading stops once ``n_tokens`` are packed, whatever the
corpus's size. ``LOCAL_READER`` names this way of reading; it is part of a local corpus's fingerprint.
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
SHUFFLE_BUFFER = 10_000  # documents held for shuffling (hub datasets use the same buffer)
MAX_DOC_CHARS = 16_384  # a longer local document is cut into pieces at whitespace (~4k tokens each)
PARQUET_BATCH = 1_024  # rows read from a parquet file at a time
LOCAL_READER = "stream-paragraphs-v1"  # changes whenever the rows a local source gives change


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


def pieces(text: str, limit: int = MAX_DOC_CHARS) -> Iterator[str]:
    """``text`` in pieces of at most ``limit`` characters, cut after the last whitespace where there is one."""
    while len(text) > limit:
        cut = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit)) + 1 or limit
        yield text[:cut]
        text = text[cut:]
    if text:
        yield text


def _paragraphs(path: Path) -> Iterator[str]:
    """The paragraphs of a plain-text file (a blank line ends one), each at most ``MAX_DOC_CHARS`` long."""
    lines: list[str] = []
    size = 0
    for _, line in _lines(path):
        if not line.strip():
            if lines:
                yield "".join(lines)
            lines, size = [], 0
            continue
        for piece in pieces(line):  # a file without newlines is cut too
            if size + len(piece) > MAX_DOC_CHARS and lines:
                yield "".join(lines)
                lines, size = [], 0
            lines.append(piece)
            size += len(piece)
    if lines:
        yield "".join(lines)


def _parquet_texts(path: Path, column: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
        names = f.schema_arrow.names
    except Exception as e:
        raise CorpusError(f"corpus file {path} is not a readable parquet file ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:120]}): re-export it or remove it") from None
    if column not in names:
        raise CorpusError(f"{path} has no column '{column}' (has {names}): set corpus.text_column")
    for batch in f.iter_batches(batch_size=PARQUET_BATCH, columns=[column]):
        yield from (str(t) for t in batch.column(0).to_pylist())


def _file_documents(path: Path, column: str) -> Iterator[str]:
    if path.suffix == ".jsonl":
        texts = (jsonl_text(path, i, line, column) for i, line in _lines(path) if line.strip())
    elif path.suffix == ".parquet":
        texts = _parquet_texts(path, column)
    else:
        yield from _paragraphs(path)
        return
    for text in texts:
        yield from pieces(text)


def shuffled(docs: Iterable[str], seed: int, size: int = SHUFFLE_BUFFER) -> Iterator[str]:
    """``docs`` in a seeded order that never holds more than ``size`` of them: each arriving document takes
    the place of a random one of the buffer, which is yielded; the rest come out shuffled at the end."""
    rng = random.Random(seed)
    buf: list[str] = []
    for doc in docs:
        if len(buf) < size:
            buf.append(doc)
            continue
        i = rng.randrange(size)
        yield buf[i]
        buf[i] = doc
    rng.shuffle(buf)
    yield from buf


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
    random.Random(cfg.seed).shuffle(files)
    yield from shuffled((d for f in files for d in _file_documents(f, cfg.text_column)), cfg.seed)


def is_local(source: str) -> bool:
    """A source read from local files (``LOCAL_READER`` belongs to its fingerprint)."""
    return source != "cpython" and not source.startswith("hf:")


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
    chunks: list[np.ndarray] = []  # int32 runs of BOS + document tokens
    have = 0
    batch: list[str] = []

    def flush() -> int:
        ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
        batch.clear()
        run = np.fromiter((t for doc in ids for t in (bos, *doc)), dtype=np.int32,
                          count=sum(len(doc) + 1 for doc in ids))
        chunks.append(run)
        return len(run)

    for doc in docs:
        batch.append(doc)
        if len(batch) >= docs_per_call:
            have += flush()
            if have >= need:
                break
    if batch and have < need:
        have += flush()
    if have < need:
        rows = have // (ctx_len - 1)
        raise CorpusError(f"the corpus gives only {have} tokens ({rows} rows of {ctx_len}) but "
                          f"corpus.n_tokens asks for {n_rows * ctx_len}: lower n_tokens or use a larger corpus")
    body = np.concatenate(chunks)[:need].reshape(n_rows, ctx_len - 1)
    return np.concatenate([np.full((n_rows, 1), bos, dtype=np.int32), body], axis=1)
