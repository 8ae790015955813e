"""Cost as the work grows (not a test): one 4,608-latent range of two hookpoints at several corpus sizes, each
stage in its own process, wall seconds and peak RSS (ru_maxrss of that process) per stage.

The corpus is a plain-text file of ``--mb`` MB (cpython's English, paragraphs separated by blank lines,
repeated); the sparse coders are random sparsify TopK SAEs of the offline default's shape (8 x 576 latents,
k = 32: as many non-zeros per token as trained ones, so the same bytes to cache, publish and sample). The
hookpoints default to ``layers.1`` and ``layers.2`` (d_in 576 like every SmolLM2 layer): the forward pass stops
at the deepest hook, and on this 2-core CPU the offline default's ``layers.15`` caches ~900 tokens/s (4 M
tokens: 75 min) where two early layers leave the SAE encodes and the storage as most of the work. Stages:
``corpus`` (the file read, tokenized, packed and stored), ``cache`` (the forward pass + encodes for both
hookpoints), ``publish`` (both partitions' activations), ``latent_stats``, ``examples`` and ``flags`` (the
scores stage's heuristic flags; both partitions). Printed per corpus size: seconds and peak RSS per stage,
then per stage the ratio of the largest to the smallest size (tokens, seconds, RSS): time should follow the
tokens, memory after caching should not.

    .venv/bin/python benchmarks/scaling.py [--tokens 262144 1048576 4194304] [--mb 30] [--keep DIR]
        [--hookpoints layers.1 layers.2] [--stages publish latent_stats examples flags]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from corpus_memory import make_corpus  # noqa: E402
from machine import describe, load, verdict  # noqa: E402

HOOKS = ["layers.1", "layers.2"]
LATENTS = 4608
STAGES = ["corpus", "cache", "publish", "latent_stats", "examples", "flags"]


def random_saes(d: Path, hooks: list[str]) -> None:
    """Random sparsify TopK SAEs (576 -> 4,608, k = 32) for both hookpoints."""
    import torch
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(0)
    for h in hooks:
        SparseCoder(576, SparseCoderConfig(expansion_factor=8, k=32)).save_to_disk(d / h)


def project(d: Path, corpus: Path, saes: Path, tokens: int, hooks: list[str]) -> Path:
    base = yaml.safe_load((ROOT / "data" / "project.yaml").read_text())
    base.update({"database": str(d / "scaling.duckdb"), "workdir": str(ROOT / "data"), "hookpoints": hooks,
                 "latents": {"start": 0, "stop": LATENTS, "range_size": LATENTS, "max_per_range": None}})
    base["corpus"] = {**base["corpus"], "source": str(corpus), "n_tokens": tokens}
    base["sae"] = {**base["sae"], "source": str(saes), "format": "sparsify"}
    path = d / "project.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def child(stage: str, config: str) -> dict:
    """One stage in this process (the parent reads its peak RSS)."""
    from autointerp_assets.core import stages
    from autointerp_assets.core.config import load_config
    from autointerp_assets.core.scoring import heuristics
    from autointerp_assets.core.stages.context import Context
    from autointerp_assets.core.stages.scorers import partition_flags

    ctx = Context.of(load_config(config), lambda m: None)
    hooks = list(ctx.cfg.hookpoints)
    t0 = time.perf_counter()
    out: dict = {}
    if stage == "corpus":
        out = {"rows": stages.run_corpus(ctx)["rows"]}
        stages.run_sparse_coders(ctx)  # records the random coders (no training)
    elif stage == "cache":
        out = {"nonzero": int(stages.ensure_cache(ctx)[1]["nonzero"])}
    else:
        cfp = stages.ensure_cache(ctx)[0]  # complete: reused at once
        t0 = time.perf_counter()
        for h in hooks:
            if stage == "publish":
                out[h] = stages.publish_activations(ctx, cfp, h, 0, LATENTS - 1)
            elif stage == "latent_stats":
                out[h] = stages.run_latent_stats(ctx, h, 0, LATENTS - 1)["status_counts"]
            elif stage == "examples":
                out[h] = stages.run_examples(ctx, h, 0, LATENTS - 1)["examples"]
            else:  # the scores stage's heuristic flags
                flags = partition_flags(ctx, h, 0, LATENTS - 1)
                out[h] = {f: int(flags[f].sum()) for f in heuristics.FLAGS}
    return {"seconds": time.perf_counter() - t0, "out": out}


def run_stage(stage: str, config: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", stage, str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"stage {stage} failed:\n{err[-3000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    return {**res, "wall": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[262_144, 1_048_576, 4_194_304])
    ap.add_argument("--mb", type=int, default=30)
    ap.add_argument("--keep", help="a directory to keep the warehouses in (default: a temporary one)")
    ap.add_argument("--hookpoints", nargs="+", default=HOOKS)
    ap.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES,
                    help="stages to run (the later ones on the warehouses of an earlier --keep run: its cache reused)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child), default=str))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        corpus, saes = root / "corpus.txt", root / "saes"
        if not corpus.exists():  # (a kept directory's corpus and coders are reused)
            make_corpus(corpus, a.mb)
        if not saes.exists():
            random_saes(saes, a.hookpoints)
        print(f"{describe()}; corpus {corpus.stat().st_size / 2**20:.1f} MB plain text; {a.hookpoints}, one "
              f"{LATENTS:,}-latent range; random TopK SAEs (k 32)")
        before, res = load(), {}
        for n in a.tokens:
            d = root / f"tokens-{n}"
            d.mkdir(parents=True, exist_ok=True)
            cfg = project(d, corpus, saes, n, a.hookpoints)
            res[n] = {}
            for stage in a.stages:
                r = res[n][stage] = run_stage(stage, cfg)
                print(f"{n:>10,} tokens  {stage:13} {r['seconds']:8.1f} s  peak RSS {r['peak_rss_mb']:7,.0f} MB  "
                      f"{json.dumps(r['out'])[:80]}", flush=True)
            size = sum(f.stat().st_size for f in d.glob("scaling.duckdb*"))
            print(f"{n:>10,} tokens  warehouse {size / 2**20:,.0f} MB", flush=True)
        time.sleep(75)  # its own stages keep the 1-minute load high: let it decay, so that it says what else ran
        after = load()
    lo, hi = min(a.tokens), max(a.tokens)
    print(f"\nfrom {lo:,} to {hi:,} tokens ({hi / lo:.0f}x):")
    print(f"{'stage':13} {'seconds':>16} {'x':>6} {'peak RSS MB':>18} {'x':>6}")
    for stage in a.stages:
        s0, s1 = res[lo][stage]["seconds"], res[hi][stage]["seconds"]
        m0, m1 = res[lo][stage]["peak_rss_mb"], res[hi][stage]["peak_rss_mb"]
        print(f"{stage:13} {s0:7.1f} -> {s1:7.1f} {s1 / s0:6.2f} {m0:8,.0f} -> {m1:7,.0f} {m1 / m0:6.2f}")
    print(verdict(before, after)[1])


if __name__ == "__main__":
    main()
