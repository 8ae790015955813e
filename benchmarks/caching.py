"""Caching benchmark on the offline default model (not a test): prints ratios against a baseline
measured in the same run.

1. time: the activations forward pass (hooks, SAE encodes, DuckDB writes) vs a bare forward pass of
   the same rows, same batch size / dtype / threads, stopped after the deepest hook (goal: <= 1.10x).
   First ``--interleaved`` runs in one process each: the real caching run with a bare forward pass of
   every batch just before it, so both see the same machine state (the least noisy measure here). Then
   bare and caching alternate ``--repeat`` times, each in a fresh subprocess (caching on a fresh copy
   of the database), and every pair's ratio is printed with the load average around it: on a shared
   machine the spread of the ratios is the honest error bar;
2. peak RSS of the caching process at two token budgets (goal: flat), each in its own subprocess;
   A third run per pair does the forward pass and every SAE encode (matmul + TopK) and keeps nothing:
   the arithmetic floor of caching with these SAEs, so the ratio splits into SAE math vs our own cost;
3. bytes on disk per stored non-zero (goal: <= 6; delphi stores 8): DuckDB blocks used by the cache.

It also counts the FLOPs per token of the forward pass up to the deepest hook and of the SAE encodes: their
ratio is the floor any cache of these SAEs has on a machine that runs both at the same speed.

    .venv/bin/python benchmarks/caching.py [--small 32768] [--large 131072] [--repeat 2] [--interleaved 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(mode: str, cfg_path: str) -> dict:
    """Runs in a subprocess: one measurement, printed as JSON on the last line."""
    import torch

    from autointerp_assets.core import caching, stages
    from autointerp_assets.core.config import load_config
    from autointerp_assets.core.stages.activations import stream_rows

    ctx = stages.Context.of(load_config(cfg_path), lambda m: print(m, file=sys.stderr, flush=True))
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
    elif mode == "encode":  # the arithmetic floor: forward + every SAE's encode (matmul + TopK), nothing kept
        from autointerp_assets.core.stages.sparse_coders import load_coders

        lm, _ = caching.load_subject_model(ctx.model_dir(), cfg.caching.dtype, cfg.caching.threads)
        saes = load_coders(stages.coder_rows(ctx))
        dtype = caching.torch_dtype(cfg.caching.encode_dtype)
        t0 = time.perf_counter()
        with caching.Residuals(lm, list(saes)) as res:
            for _a, rows in stream_rows(ctx, 0, n_rows):
                floor_pass(res, torch.from_numpy(rows), saes, dtype)
        out["seconds"] = time.perf_counter() - t0
    elif mode == "interleaved":
        out.update(interleaved(ctx))
    else:
        with ctx.wh.read() as con:
            before = con.execute("SELECT used_blocks * block_size FROM pragma_database_size()").fetchone()[0]
        _cfp, st = stages.ensure_cache(ctx)
        with ctx.wh.read() as con:
            after = con.execute("SELECT used_blocks * block_size FROM pragma_database_size()").fetchone()[0]
            cols = con.execute("SELECT column_name, string_agg(DISTINCT compression, '/') FROM "
                               "pragma_storage_info('activation_cache') GROUP BY ALL ORDER BY ALL").fetchall()
        out.update(seconds=st["seconds"], nonzero=st["nonzero"], bytes=after - before,
                   compression=dict(cols), forward_s=st["forward_s"], write_wait_s=st["write_wait_s"],
                   finish_s=st["finish_s"], writer_s=st["writer_s"])
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def floor_pass(res, ids, saes: dict, dtype) -> None:
    """The arithmetic floor of one batch: the early-stopped forward pass and every SAE encode (matmul + TopK,
    BOS dropped as in caching), nothing kept."""
    resid = res.run(ids)
    for h, coder in saes.items():
        coder.encode(resid[h][:, 1:, :].reshape(-1, resid[h].shape[-1]), dtype)


def interleaved(ctx) -> dict:
    """The real caching run with, just before each of its batches, a bare forward pass of the same rows and
    the arithmetic floor (forward + every SAE encode, nothing kept), all in one process.

    Both sides then see the same machine state batch by batch (on a shared VM the speed drifts by tens of
    percent over minutes, which pairs of whole subprocess runs cannot cancel). All three use the caching
    run's own model, hooks and coders (its hooks stop every forward pass after the deepest hook; separate
    copies of the weights ran up to 5 % apart); bare and floor swap places every batch. They run only
    when no cache write is in flight: the wait counts as caching time (the writes never overlap a forward
    pass here, a pessimistic reading of caching). Caching = the run's seconds minus the other two.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from autointerp_assets.core import caching
    from autointerp_assets.core.stages import activations as act

    cond, state = threading.Condition(), {"busy": 0, "bare": [], "floor": []}

    def write_done(_f):
        with cond:
            state["busy"] -= 1
            cond.notify_all()

    class CountingWriter(ThreadPoolExecutor):  # the cache's writer thread, counting writes in flight
        def submit(self, fn, /, *args, **kwargs):
            with cond:
                state["busy"] += 1
            fut = super().submit(fn, *args, **kwargs)
            fut.add_done_callback(write_done)
            return fut

    class Recorded(caching.Residuals):  # the caching run's hooks, to run the bare and floor passes through
        def __enter__(self):
            state["res"] = self
            return super().__enter__()

    stream, load = act.stream_rows, act.load_coders
    dtype = caching.torch_dtype(ctx.cfg.caching.encode_dtype)

    def load_recorded(rows):
        state["saes"] = load(rows)
        return state["saes"]

    def passes_then(*args):
        for i, (a, rows) in enumerate(stream(*args)):
            with cond:
                cond.wait_for(lambda: state["busy"] == 0)
            ids, res = torch.from_numpy(rows), state["res"]
            for kind in ("bare", "floor") if i % 2 == 0 else ("floor", "bare"):
                t0 = time.perf_counter()
                if kind == "floor":
                    floor_pass(res, ids, state["saes"], dtype)
                else:
                    res.run(ids)
                state[kind].append(time.perf_counter() - t0)
            yield a, rows

    caching.Residuals, act.stream_rows, act.load_coders, act.ThreadPoolExecutor = (Recorded, passes_then,
                                                                                   load_recorded, CountingWriter)
    # each batch now takes ~3x as long (bare + floor + caching): group commits as in a plain run
    cc = ctx.cfg.caching
    cfg = ctx.cfg.model_copy(update={"caching": cc.model_copy(update={"commit_every_s": 3 * cc.commit_every_s})})
    _cfp, st = act.ensure_cache(type(ctx).of(cfg, ctx.log))
    bare, floor = sum(state["bare"]), sum(state["floor"])
    return {"seconds": st["seconds"] - bare - floor, "bare_seconds": bare, "floor_seconds": floor,
            "batches": len(state["bare"]), "writer_s": st["writer_s"]}


def flops_per_token(cfg_path: Path) -> tuple[float, float]:
    """(forward to the deepest hook, every SAE encode) multiply-adds x 2 per token: the Linear layers of the
    decoder blocks up to the deepest hook plus causal attention (QK^T and AV over ctx_len / 2 on average)."""
    import torch

    from autointerp_assets.core import caching, stages
    from autointerp_assets.core.config import load_config

    ctx = stages.Context.of(load_config(cfg_path))
    model = caching.meta_model(ctx.model_dir())
    deepest = max(int(h.split(".")[-1]) for h in ctx.cfg.hookpoints)
    blocks = caching.resolve_hookpoints(model, [f"layers.{i}" for i in range(deepest + 1)]).values()
    linear = sum(m.in_features * m.out_features for b in blocks for m in b.modules() if isinstance(m, torch.nn.Linear))
    tc = model.config.get_text_config()
    head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
    attention = (deepest + 1) * 2 * tc.num_attention_heads * head_dim * (ctx.cfg.corpus.ctx_len + 1) / 2
    sae = sum(r["d_in"] * r["num_latents"] for r in stages.coder_rows(ctx).values())
    return 2 * (linear + attention), 2 * sae


def run_child(mode: str, cfg_path: Path) -> dict:
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(cfg_path)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{mode} child failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load": (load, os.getloadavg()[0])}


def fresh_copy(cfg_path: Path, tag: str) -> Path:
    """The prepared database (corpus + coders, no cache) copied, with a config pointing at the copy."""
    import yaml

    raw = yaml.safe_load(cfg_path.read_text())
    db = Path(raw["database"])
    raw["database"] = str(db.with_name(f"{db.stem}-{tag}.duckdb"))
    shutil.copy(db, raw["database"])
    out = cfg_path.with_name(f"{cfg_path.stem}-{tag}.yaml")
    out.write_text(yaml.safe_dump(raw))
    return out


def prepare(tmp: Path, n_tokens: int, sae_dir: Path) -> Path:
    """A fresh database with the corpus rows and the default's trained SAEs recorded."""
    import yaml

    from autointerp_assets.core import stages
    from autointerp_assets.core.config import load_config

    raw = yaml.safe_load((ROOT / "data/project.yaml").read_text())
    raw.update(database=str(tmp / f"bench-{n_tokens}.duckdb"), workdir=str(ROOT / "data"))
    raw["corpus"] = {**raw.get("corpus", {}), "n_tokens": n_tokens}
    raw["sae"] = {**raw.get("sae", {}), "source": str(sae_dir)}
    path = tmp / f"bench-{n_tokens}.yaml"
    path.write_text(yaml.safe_dump(raw))
    ctx = stages.Context.of(load_config(path))
    stages.run_corpus(ctx)
    stages.run_sparse_coders(ctx)
    return path


def default_sae_dir() -> Path:
    """The TopK SAEs `make run` trains for the offline default (trained here if missing)."""
    from autointerp_assets.core import stages
    from autointerp_assets.core.config import load_config
    from autointerp_assets.core.stages.sparse_coders import sae_root

    ctx = stages.Context.of(load_config(ROOT / "data/project.yaml"))
    root = sae_root(ctx)
    if not all((root / h / "sae.safetensors").exists() for h in ctx.cfg.hookpoints):
        stages.run_corpus(ctx)
        stages.run_sparse_coders(ctx)
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=32_768)
    ap.add_argument("--large", type=int, default=131_072)
    ap.add_argument("--repeat", type=int, default=2, help="bare/caching pairs at the large budget")
    ap.add_argument("--interleaved", type=int, default=2, help="one-process interleaved runs at the large budget")
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    import yaml

    sae_dir = default_sae_dir()
    with tempfile.TemporaryDirectory(prefix="bench-caching-") as t:
        small, large = prepare(Path(t), args.small, sae_dir), prepare(Path(t), args.large, sae_dir)
        raw = yaml.safe_load(large.read_text())
        cc = raw["caching"]
        print(f"settings: hookpoints {raw['hookpoints']}, batch_rows {cc['batch_rows']}, dtype {cc['dtype']}, "
              f"encode_dtype {cc.get('encode_dtype')}, threads {cc['threads'] or 'torch default'} "
              f"({os.cpu_count()} CPUs)", flush=True)
        pairs, ratios, interleaved_ratios, interleaved_floors = [], [], [], []
        for r in range(args.interleaved):
            il = run_child("interleaved", fresh_copy(large, f"i{r}"))
            interleaved_ratios.append(il["seconds"] / il["bare_seconds"])
            interleaved_floors.append(il["floor_seconds"] / il["bare_seconds"])
            print(f"interleaved run {r + 1}, {il['tokens']:,} tokens, {il['batches']} batches, each a bare forward, "
                  f"the floor (forward + SAE encodes) and the caching of the same rows in one process: bare "
                  f"{il['bare_seconds']:.1f}s, floor {il['floor_seconds']:.1f}s, caching {il['seconds']:.1f}s (writer "
                  f"{il['writer_s']:.1f}s, never overlapping a forward pass) -> caching {interleaved_ratios[-1]:.3f}x, "
                  f"floor {interleaved_floors[-1]:.3f}x, caching / floor {il['seconds'] / il['floor_seconds']:.3f}x",
                  flush=True)
        for r in range(args.repeat):  # each pair printed as it ends: a run cut short still says something
            order = ("bare", "cache", "encode") if r % 2 == 0 else ("encode", "cache", "bare")  # cancels drift
            got = {m: run_child(m, fresh_copy(large, f"r{r}") if m == "cache" else large) for m in order}
            bare, cache, enc = got["bare"], got["cache"], got["encode"]
            pairs.append((bare, cache, enc))
            ratios.append(cache["seconds"] / bare["seconds"])
            print(f"pair {r + 1} ({', '.join(order)}), {bare['tokens']:,} tokens: bare forward to the deepest hook "
                  f"{bare['seconds']:.1f}s ({bare['tokens'] / bare['seconds']:,.0f} tok/s, load avg "
                  f"{bare['load'][0]:.1f}->{bare['load'][1]:.1f}); caching {cache['seconds']:.1f}s "
                  f"({cache['tokens'] / cache['seconds']:,.0f} tok/s, load avg {cache['load'][0]:.1f}->"
                  f"{cache['load'][1]:.1f}; forward+encode loop {cache['forward_s']:.1f}s of which "
                  f"{cache['write_wait_s']:.2f}s waiting on DuckDB; the writer thread busy {cache['writer_s']:.1f}s "
                  f"beside it; finish {cache['finish_s']:.2f}s) -> {ratios[-1]:.3f}x; forward + SAE encodes alone "
                  f"{enc['seconds']:.1f}s -> {enc['seconds'] / bare['seconds']:.3f}x (the arithmetic floor of any "
                  f"cache of these SAEs)", flush=True)
        cache_small = run_child("cache", small)
        fwd, sae = flops_per_token(large)
    floors = [e["seconds"] / b["seconds"] for b, _, e in pairs]
    print(f"caching / bare: {' '.join(f'{x:.3f}x' for x in ratios)} (median {statistics.median(ratios):.3f}, min "
          f"{min(ratios):.3f}, max {max(ratios):.3f}; goal <= 1.10; a load average above ~0.5 means other jobs "
          f"shared the 2 cores)")
    if interleaved_ratios:
        print(f"interleaved (bare, floor and caching batch by batch in one process): caching "
              f"{' '.join(f'{x:.3f}x' for x in interleaved_ratios)} (goal <= 1.10), floor "
              f"{' '.join(f'{x:.3f}x' for x in interleaved_floors)}")
    print(f"floor (forward + encodes) / bare: {' '.join(f'{x:.3f}x' for x in floors)} (median "
          f"{statistics.median(floors):.3f}); by FLOPs: forward to the deepest hook {fwd / 1e6:.1f} MFLOP/token, "
          f"SAE encodes {sae / 1e6:.1f} MFLOP/token -> {1 + sae / fwd:.3f}x at equal speed, before the TopK")
    fastest = min(c["seconds"] for _, c, _ in pairs) / min(b["seconds"] for b, _, _ in pairs)
    floor = min(e["seconds"] for _, _, e in pairs) / min(b["seconds"] for b, _, _ in pairs)
    print(f"fastest caching / fastest bare across pairs: {fastest:.3f}x; "
          f"fastest forward + encodes / fastest bare: {floor:.3f}x (floor) -> caching's own cost beyond the SAE "
          f"arithmetic: {fastest / floor:.3f}x")
    bare, cache_large = pairs[-1][0], pairs[-1][1]
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
