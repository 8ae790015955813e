"""Stage sparse_coders: train TopK SAEs on the hookpoints' residuals, or load a sparsify checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from .. import caching
from ..fingerprint import fingerprint
from ..sparse_coders import coder_info, load_sparse_coder, train_topk_sae
from .context import Context, model_identity
from .corpus import load_rows


def sae_train_spec(ctx: Context) -> dict:
    return {"sae": ctx.cfg.sae.model_dump(), "hookpoints": list(ctx.cfg.hookpoints),
            "corpus_fp": ctx.corpus_fp(), "model": model_identity(ctx.cfg.subject_model, ctx.workdir),
            "dtype": ctx.cfg.caching.dtype}


def sae_root(ctx: Context) -> Path:
    if ctx.cfg.sae.source != "train":
        return ctx.cfg.resolve(ctx.cfg.sae.source)
    return ctx.workdir / "sparse_coders" / fingerprint("sae-train", sae_train_spec(ctx))


def run_sparse_coders(ctx: Context) -> list[dict]:
    cfg = ctx.cfg
    root = sae_root(ctx)
    stats: dict[str, dict] = {}
    hooks = list(cfg.hookpoints)
    missing = [h for h in hooks if not (root / h / "sae.safetensors").exists()]
    lm = None
    if cfg.sae.source == "train" and missing:
        lm, _ = caching.load_subject_model(ctx.model_dir(), cfg.caching.dtype, cfg.caching.threads)
        n_rows = max(1, cfg.sae.train_tokens // cfg.corpus.ctx_len)
        rows = load_rows(ctx, n_rows)
        t0 = time.perf_counter()
        resid = caching.collect_training_residuals(lm, missing, rows, cfg.caching.batch_rows)
        ctx.log(f"collected {len(rows) * (cfg.corpus.ctx_len - 1)} training tokens at {missing} "
                f"in {time.perf_counter() - t0:.1f}s")
        for h in missing:
            sae, st = train_topk_sae(resid.pop(h), cfg.sae, log=lambda m, h=h: ctx.log(f"{h}: {m}"))
            tmp = root / (h + ".tmp")
            sae.save_to_disk(tmp)
            tmp.rename(root / h)  # atomic: a half-written SAE is never picked up
            stats[h] = st
    infos = []
    for h in hooks:
        sae = load_sparse_coder(root, h)
        info = coder_info(root, h, sae)
        _check_width(ctx, h, info.d_in, lm)
        if cfg.latents.stop > info.num_latents:
            raise ValueError(f"latents.stop ({cfg.latents.stop}) exceeds the {info.num_latents} latents of the "
                             f"sparse coder at {h}: lower latents.stop")
        st = stats.get(h, {})
        infos.append({"layer": h, "sae_fp": fingerprint("sae", {"digest": info.digest}), "path": info.path,
                      "d_in": info.d_in, "num_latents": info.num_latents, "k": info.k,
                      "source": cfg.sae.source, "train_tokens": st.get("train_tokens"),
                      "fvu": st.get("fvu"), "dead_fraction": st.get("dead_fraction")})
    frame = pl.DataFrame(infos)
    with ctx.wh.write() as con:
        con.execute(f"DELETE FROM sparse_coders WHERE layer IN ({','.join('?' * len(hooks))})", hooks)
        for i in infos:
            prev = con.execute("SELECT 1 FROM fingerprints WHERE fingerprint = ?", [i["sae_fp"]]).fetchone()
            if not prev:
                ctx.wh.record_fingerprint(con, i["sae_fp"], "sae", {"layer": i["layer"], "path": i["path"]})
        ctx.wh.insert(con, "sparse_coders", frame)
    return infos


def _check_width(ctx: Context, hookpoint: str, d_in: int, lm=None) -> None:
    from transformers import AutoConfig

    width = getattr(AutoConfig.from_pretrained(ctx.model_dir()), "hidden_size", None)
    if width is not None and width != d_in:
        raise ValueError(f"the sparse coder at {hookpoint} expects d_in={d_in} but the model's width is {width}: "
                         f"use the SAE trained for this model/hookpoint")


def coder_rows(ctx: Context) -> dict[str, dict]:
    hooks = list(ctx.cfg.hookpoints)
    frame = ctx.wh.query("SELECT * FROM sparse_coders WHERE layer IN (" + ",".join("?" * len(hooks)) + ")", hooks)
    got = {r["layer"]: r for r in frame.to_dicts()}
    if set(got) != set(hooks):
        raise RuntimeError(f"no sparse coder recorded for {sorted(set(hooks) - set(got))}: materialize sparse_coders")
    return got
