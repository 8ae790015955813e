"""Stage sparse_coders: train TopK SAEs on the hookpoints' residuals, or load a checkpoint in any format."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from .. import caching, identity
from ..separators import SEPARATOR_VERSION, model_separators
from ..sparse_coders import (SparseCoderError, checkpoint_dir, coder_info, load_dir, resolve_source, subdir,
                             train_topk_sae)
from ..storage import queries
from .context import Context
from .corpus import load_rows


def sae_train_spec(ctx: Context) -> dict:
    return identity.sae_train_spec(ctx.cfg, ctx.workdir,
                                   [SEPARATOR_VERSION, *model_separators(ctx.cfg.corpus, ctx.model_dir())])


def sae_root(ctx: Context) -> Path:
    sae = ctx.cfg.sae
    if sae.source == "train":
        return ctx.workdir / "sparse_coders" / identity.sae_train_fp(sae_train_spec(ctx))
    if sae.source.startswith("hf:"):
        return resolve_source(sae.source, [subdir(h, sae.paths) for h in ctx.cfg.hookpoints], sae.revision)
    return resolve_source(str(ctx.cfg.resolve(sae.source)), [])


def run_sparse_coders(ctx: Context) -> list[dict]:
    cfg = ctx.cfg
    hooks = list(cfg.hookpoints)
    stray = sorted(set(cfg.sae.paths) - set(hooks))
    if stray:
        raise SparseCoderError(f"sae.paths names {stray}, which are not hookpoints {hooks}: fix sae.paths")
    # Hookpoint names are checked on the model's module tree (no weights loaded) before anything heavy.
    skeleton = caching.meta_model(ctx.model_dir())
    caching.resolve_hookpoints(skeleton, hooks)
    root = sae_root(ctx)
    stats: dict[str, dict] = {}
    if cfg.sae.source == "train":
        stats = _train_missing(ctx, root, [h for h in hooks if not (root / h / "sae.safetensors").exists()])
    infos = []
    paths = {} if cfg.sae.source == "train" else cfg.sae.paths
    for h in hooks:
        d = checkpoint_dir(root, h, paths)
        coder = load_dir(d, "sparsify" if cfg.sae.source == "train" else cfg.sae.format)
        check_width(h, coder, caching.expected_width(skeleton, h, coder.hook_input))
        if cfg.latents.stop > coder.num_latents:
            raise SparseCoderError(f"latents.stop ({cfg.latents.stop}) exceeds the {coder.num_latents} latents of "
                                   f"the sparse coder at {h}: lower latents.stop")
        info = coder_info(d, h, coder)
        st = stats.get(h, {})
        infos.append({"layer": h, "sae_fp": identity.sae_fp(info.digest), "path": info.path,
                      "d_in": info.d_in, "num_latents": info.num_latents, "k": info.k, "format": info.format,
                      "architecture": info.architecture, "hook_input": info.hook_input,
                      "source": cfg.sae.source, "train_tokens": st.get("train_tokens"),
                      "fvu": st.get("fvu"), "dead_fraction": st.get("dead_fraction")})
    frame = pl.DataFrame(infos, schema_overrides={"train_tokens": pl.Int64, "fvu": pl.Float64,
                                                  "dead_fraction": pl.Float64, "k": pl.Int64})
    for attempt in ctx.wh.attempts():
        with attempt as con:
            con.execute(queries.DELETE_LAYER_CODERS, [hooks])
            for i in infos:
                ctx.wh.record_fingerprint(con, i["sae_fp"], "sae", {"layer": i["layer"], "path": i["path"],
                                                                    "format": i["format"]})
            ctx.wh.insert(con, "sparse_coders", frame)
    return infos


def _train_missing(ctx: Context, root: Path, missing: list[str]) -> dict[str, dict]:
    if not missing:
        return {}
    cfg = ctx.cfg
    lm, _ = caching.load_subject_model(ctx.model_dir(), cfg.caching.dtype, cfg.caching.threads)
    rows = load_rows(ctx, max(1, cfg.sae.train_tokens // cfg.corpus.ctx_len))
    t0 = time.perf_counter()
    resid = caching.collect_training_residuals(lm, missing, rows, cfg.caching.batch_rows,
                                               model_separators(cfg.corpus, ctx.model_dir()))
    ctx.log(f"collected {len(next(iter(resid.values())))} training tokens (separators excluded) at {missing} "
            f"in {time.perf_counter() - t0:.1f}s")
    stats = {}
    for h in missing:
        sae, st = train_topk_sae(resid.pop(h), cfg.sae, log=lambda m, h=h: ctx.log(f"{h}: {m}"))
        tmp = root / (h + ".tmp")
        sae.save_to_disk(tmp)
        tmp.rename(root / h)  # atomic: a half-written SAE is never picked up
        stats[h] = st
    return stats


def check_width(hookpoint: str, coder, width: int | None) -> None:
    """d_in must equal the model's width where the coder reads (None = not known without a forward pass)."""
    if width is not None and width != coder.d_in:
        where = "input" if coder.hook_input else "output"
        raise SparseCoderError(f"the sparse coder at {hookpoint} expects d_in={coder.d_in} but the model's {where} "
                               f"there has width {width}: use the coder trained for this model and hookpoint")


def latest_coder(wh, layer: str) -> dict | None:
    """The row of ``sparse_coders`` the stages use for ``layer`` (the newest), or None before sparse_coders ran."""
    rows = wh.query(queries.LATEST_CODER, {"layer": layer})
    return rows.row(0, named=True) if rows.height else None


def coder_rows(ctx: Context) -> dict[str, dict]:
    hooks = list(ctx.cfg.hookpoints)
    frame = ctx.wh.query(queries.LAYER_CODERS, [hooks])
    got = {r["layer"]: r for r in frame.to_dicts()}
    if set(got) != set(hooks):
        raise RuntimeError(f"no sparse coder recorded for {sorted(set(hooks) - set(got))}: materialize sparse_coders")
    return got


def load_coders(rows: dict[str, dict]) -> dict:
    """The recorded coder of each hookpoint, loaded from its directory in its format."""
    return {h: load_dir(Path(r["path"]), r.get("format") or "sparsify") for h, r in rows.items()}
