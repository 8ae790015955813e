"""Caching benchmark on the offline default model (not a test): prints ratios against a baseline
measured in the same run.

1. time: the activations forward pass (hooks, SAE encodes, DuckDB writes, final sort) vs a bare
   forward pass of the same rows stopped after the deepest hook (goal: <= 1.10x);
2. peak RSS of the caching process at two token budgets (goal: flat), each in its own subprocess;
3. bytes on disk per stored non-zero (goal: <= 6; delphi stores 8): DuckDB blocks used by the cache.

    .venv/bin/python benchmarks/caching.py [--small 32768] [--large 131072]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(mode: str, cfg_path: str) -> dict:
    """Runs in a subprocess: one measurement, printed as JSON on the last line."""
    import torch

    from autointerp_assets.core import caching, pipeline
    from autointerp_assets.core.config import load_config
    from autointerp_assets.core.stages.activations import stream_rows

    ctx = pipeline.Context.of(load_config(cfg_path), lambda m: print(m, file=sys.stderr, flush=True))
    cfg = ctx.cfg
    n_rows = ctx.wh.scalar("SELECT count(*) FROM tokens WHERE corpus_fp = ?", [ctx.corpus_fp()])
    out = {"mode": mode, "tokens": n_rows * cfg.corpus.ctx_len}
    if mode == "bare":
        lm, _ = caching.load_subject_model(ctx.model_dir(), cfg.caching.dtype, cfg.caching.threads)
        deepest = max(cfg.hookpoints, key=lambda h: int(h.split(".")[-1]))
        t0 = time.perf_counter()
        with caching.Residuals(lm, [deepest]) as res:  # the same early stop, nothing captured beyond one tensor
            for _a, rows in stream_rows(ctx, 0, n_rows):
                res.run(torch.from_numpy(rows))
        out["seconds"] = time.perf_counter() - t0
    else:
        with ctx.wh.read() as con:
            before = con.execute("SELECT used_blocks * block_size FROM pragma_database_size()").fetchone()[0]
        _cfp, st = pipeline.ensure_cache(ctx)
        with ctx.wh.read() as con:
            after = con.execute("SELECT used_blocks * block_size FROM pragma_database_size()").fetchone()[0]
            cols = con.execute("SELECT column_name, string_agg(DISTINCT compression, '/') FROM "
                               "pragma_storage_info('activation_cache') GROUP BY ALL ORDER BY ALL").fetchall()
        out.update(seconds=st["seconds"], nonzero=st["nonzero"], bytes=after - before,
                   compression=dict(cols))
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(mode: str, cfg_path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(cfg_path)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{mode} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare(tmp: Path, n_tokens: int, sae_dir: Path) -> Path:
    """A fresh database with the corpus rows and the default's trained SAEs recorded."""
    import yaml

    from autointerp_assets.core import pipeline
    from autointerp_assets.core.config import load_config

    raw = yaml.safe_load((ROOT / "data/project.yaml").read_text())
    raw.update(database=str(tmp / f"bench-{n_tokens}.duckdb"), workdir=str(ROOT / "data"))
    raw["corpus"] = {**raw.get("corpus", {}), "n_tokens": n_tokens}
    raw["sae"] = {**raw.get("sae", {}), "source": str(sae_dir)}
    path = tmp / f"bench-{n_tokens}.yaml"
    path.write_text(yaml.safe_dump(raw))
    ctx = pipeline.Context.of(load_config(path))
    pipeline.run_corpus(ctx)
    pipeline.run_sparse_coders(ctx)
    return path


def default_sae_dir() -> Path:
    """The TopK SAEs `make run` trains for the offline default (trained here if missing)."""
    from autointerp_assets.core import pipeline
    from autointerp_assets.core.config import load_config
    from autointerp_assets.core.stages.sparse_coders import sae_root

    ctx = pipeline.Context.of(load_config(ROOT / "data/project.yaml"))
    root = sae_root(ctx)
    if not all((root / h / "sae.safetensors").exists() for h in ctx.cfg.hookpoints):
        pipeline.run_corpus(ctx)
        pipeline.run_sparse_coders(ctx)
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=32_768)
    ap.add_argument("--large", type=int, default=131_072)
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    sae_dir = default_sae_dir()
    with tempfile.TemporaryDirectory(prefix="bench-caching-") as t:
        small, large = prepare(Path(t), args.small, sae_dir), prepare(Path(t), args.large, sae_dir)
        bare = run_child("bare", large)
        cache_large = run_child("cache", large)
        cache_small = run_child("cache", small)
    ratio = cache_large["seconds"] / bare["seconds"]
    print(f"tokens {bare['tokens']:,}: bare forward to the deepest hook {bare['seconds']:.1f}s "
          f"({bare['tokens'] / bare['seconds']:,.0f} tok/s); caching {cache_large['seconds']:.1f}s "
          f"({cache_large['tokens'] / cache_large['seconds']:,.0f} tok/s) -> {ratio:.3f}x (goal <= 1.10)")
    print(f"peak RSS: {cache_small['tokens']:,} tokens {cache_small['peak_rss_mib']:,.0f} MiB, "
          f"{cache_large['tokens']:,} tokens {cache_large['peak_rss_mib']:,.0f} MiB "
          f"-> {cache_large['peak_rss_mib'] / cache_small['peak_rss_mib']:.3f}x (goal flat); "
          f"bare forward {bare['peak_rss_mib']:,.0f} MiB")
    for c in (cache_small, cache_large):
        print(f"disk: {c['tokens']:,} tokens, {c['nonzero']:,} non-zeros, {c['bytes'] / 2**20:.1f} MiB of DuckDB "
              f"blocks -> {c['bytes'] / c['nonzero']:.2f} bytes per non-zero (goal <= 6; delphi 8)")
    print(f"compression per column: {cache_large['compression']}")


if __name__ == "__main__":
    main()
