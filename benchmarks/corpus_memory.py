"""Corpus preparation memory (not a test): a plain-text corpus of ``--mb`` MB (the English of ``cpython``'s
documents, paragraphs separated by blank lines, repeated) prepared for ``--tokens`` tokens, each way in its own
process, peak RSS (ru_maxrss) printed per way:

- ``idle``: the process with the tokenizer loaded and nothing read (what every way pays);
- ``reader``: the streaming reader (``corpus.iter_documents`` + ``corpus.pack_rows``);
- ``stage``: the whole ``corpus_tokens`` stage (reader + rows written into a scratch warehouse);
- ``whole file`` (baseline, with ``--baseline``): the file read and tokenized as one document, as the reader did
  before it streamed (needs ~5 GB at 30 MB).

    .venv/bin/python benchmarks/corpus_memory.py [--mb 30] [--tokens 262144] [--baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import describe, load, verdict  # noqa: E402

CTX = 257


def make_corpus(path: Path, mb: int) -> None:
    from autointerp_assets.core.corpus import cpython_documents

    text = "\n\n".join(d.strip() for d in cpython_documents()) + "\n\n"
    with path.open("w", encoding="utf-8") as f:
        size = 0
        while size < mb << 20:
            f.write(text)
            size += len(text.encode())


def child(way: str, path: str, tokens: int) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    from autointerp_assets.core import corpus
    from autointerp_assets.core.config import CorpusConfig, ProjectConfig
    from autointerp_assets.core.subject_model import resolve_model

    cfg = CorpusConfig(source=path, n_tokens=tokens, ctx_len=CTX)
    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2", ROOT / "data"))
    bos = corpus.bos_id(cfg, tok)
    t0 = time.perf_counter()
    n_rows = tokens // CTX
    if way == "reader":
        rows = corpus.pack_rows(corpus.iter_documents(cfg), tok, CTX, n_rows, bos)
        assert rows.shape == (n_rows, CTX)
    elif way == "stage":
        from autointerp_assets.core.stages.context import Context
        from autointerp_assets.core.stages.corpus import run_corpus

        with tempfile.TemporaryDirectory() as d:
            pcfg = ProjectConfig(corpus=cfg.model_dump(), database=str(Path(d) / "w.duckdb"), workdir=str(ROOT / "data"))
            out = run_corpus(Context.of(pcfg, lambda m: None))
            assert out["rows"] == n_rows
    elif way == "whole file":
        rows = corpus.pack_rows([Path(path).read_text(encoding="utf-8")], tok, CTX, n_rows, bos)
        assert rows.shape == (n_rows, CTX)
    secs = time.perf_counter() - t0
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": secs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=30)
    ap.add_argument("--tokens", type=int, default=262_144)
    ap.add_argument("--baseline", action="store_true", help="also the whole-file baseline (~5 GB at 30 MB)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], int(a.child[2]))))
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "corpus.txt"
        make_corpus(path, a.mb)
        print(f"{describe()}; corpus {path.stat().st_size / 2**20:.1f} MB plain text, {a.tokens:,} tokens asked")
        ways = ["idle", "reader", "stage"] + (["whole file"] if a.baseline else [])
        before = load()
        res = {}
        for way in ways:
            proc = subprocess.run([sys.executable, __file__, "--child", way, str(path), str(a.tokens)],
                                  capture_output=True, text=True, check=True)
            res[way] = json.loads(proc.stdout.strip().splitlines()[-1])
        after = load()
    idle = res["idle"]["peak_rss_mb"]
    print(f"{'way':12} {'peak RSS MB':>12} {'above idle MB':>14} {'seconds':>8}")
    for way, r in res.items():
        print(f"{way:12} {r['peak_rss_mb']:12.0f} {r['peak_rss_mb'] - idle:14.0f} {r['seconds']:8.1f}")
    if "whole file" in res:
        print(f"whole file / streaming reader peak RSS: {res['whole file']['peak_rss_mb'] / res['reader']['peak_rss_mb']:.1f}x")
    print(verdict(before, after)[1])


if __name__ == "__main__":
    main()
