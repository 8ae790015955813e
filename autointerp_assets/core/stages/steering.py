"""Stage steering: per selected latent of a partition, the calibrated strength of its decoder direction, the
tokens it promotes and continuations of the score prompts with and without it (the science in core.steering).

Writes, in one transaction, the partition's rows of ``steering`` and ``steered_texts``. Runs only when
something configured reads them: the intervention scorer or an output-centric explainer.
"""

from __future__ import annotations

import time
from typing import Sequence

import polars as pl
import torch

from .. import caching, identity, steering
from ..config import ProjectConfig
from ..corpus import bos_id
from ..sampling.neighbours import decoder_rows
from ..scoring.surprisal import load_base_lm
from ..storage import queries
from .context import Context
from .sparse_coders import latest_coder


def steering_needed(cfgs: Sequence[ProjectConfig]) -> bool:
    """Whether any of these configs (an explainer panel) scores by intervention or explains by output."""
    return any("intervention" in c.scoring.scorers or c.explainer.kind in identity.OUTPUT_KINDS for c in cfgs)


def prompts(cfg: ProjectConfig) -> tuple[list[str], list[str]]:
    """(explain prompts, score prompts): disjoint slices of the configured or built-in neutral prompts."""
    s = cfg.steering
    p = list(s.prompts or steering.NEUTRAL_PROMPTS)
    return p[:s.n_explain], p[s.n_explain:s.n_explain + s.n_score]


def steering_spec(ctx: Context, layer: str) -> dict:
    """What a layer's steering rows are made from: the subject model, its dtype, the coder and the settings."""
    cfg = ctx.cfg
    coder = latest_coder(ctx.wh, layer)
    return identity.steering_spec(cfg, ctx.workdir, steering.VERSION, coder and coder["sae_fp"], *prompts(cfg))


def steering_fp(ctx: Context, layer: str) -> str:
    return identity.steering_fp(steering_spec(ctx, layer))


def _coder(ctx: Context, layer: str) -> dict:
    coder = latest_coder(ctx.wh, layer)
    if coder is None:
        raise RuntimeError(f"steering needs the sparse coder of {layer}: materialize sparse_coders first")
    return coder


def steerer(ctx: Context, layer: str, model_dir: str | None = None) -> steering.Steerer:
    """The subject model (shared with the surprisal scorer's loader) hooked at ``layer``: the direction goes
    where the coder reconstructs, i.e. the module's input for an input-reading SAE (SAELens resid_pre), its
    output otherwise (output SAEs, and transcoders, whose decoder writes the module's output)."""
    coder = _coder(ctx, layer)
    tok, model = load_base_lm(model_dir or ctx.model_dir(), ctx.cfg.caching.dtype)
    module = caching.resolve_hookpoints(model, [layer])[layer]
    add_to_input = bool(coder["hook_input"]) and coder["format"] != "sparsify"
    return steering.Steerer(model, tok, module, add_to_input=add_to_input, bos_id=bos_id(ctx.cfg.corpus, tok))


def run_steering(ctx: Context, layer: str, first: int, last: int) -> dict:
    cfg, s = ctx.cfg, ctx.cfg.steering
    t0 = time.perf_counter()
    stats = ctx.wh.query(queries.RANGE_SELECTED_MAX_ACTIVATIONS, [layer, first, last])
    latents = stats["latent"].to_list()
    spec = steering_spec(ctx, layer)
    sfp = identity.steering_fp(spec)
    explain, score = prompts(cfg)
    out = {"steering_fp": sfp, "latents": len(latents), "explain_prompts": len(explain),
           "score_prompts": len(score), "target_kl": s.target_kl}
    have = set(ctx.wh.query(queries.RANGE_STEERED_LATENTS, [layer, first, last, sfp])["latent"].to_list())
    if latents and have == set(latents):  # same settings, coder and selection: the stored rows stand
        return {**out, "reused": True, "seconds": round(time.perf_counter() - t0, 2)}
    if not latents:
        ctx.wh.replace_partition(layer, first, last, {"steering": pl.DataFrame(), "steered_texts": pl.DataFrame()})
        return {**out, "seconds": round(time.perf_counter() - t0, 2)}
    dirs = decoder_rows(_coder(ctx, layer)["path"], first, last)[[lat - first for lat in latents]].float()
    maxes = torch.tensor([float(m or 1.0) for m in stats["max_activation"].to_list()])
    st = steerer(ctx, layer)
    try:
        score_states = steering.prepare(st, score)
        cal = steering.calibrate(st, score_states, dirs, s.target_kl, s.kl_tolerance, s.max_steps, initial=maxes)
        ctx.log(f"{layer} {first}-{last}: strengths calibrated for {len(latents)} latents "
                f"({int(cal.converged.sum())} converged) in {time.perf_counter() - t0:.1f}s")
        ids, inc = steering.token_change(st, steering.prepare(st, explain), dirs, cal.strength, s.n_tokens)
        offset = cfg.steering.n_explain
        clean, steered = steering.generate(st, score_states, dirs, cal.strength, s.max_new_tokens, s.temperature,
                                           s.seed, prompt_indices=[offset + i for i in range(len(score))])
    finally:
        st.close()
    tok = st.tok
    rows, texts = [], []
    clean_text = [tok.decode(c) for c in clean]
    for i, lat in enumerate(latents):
        changed = sum(a != b for a, b in zip(steered[i], clean))
        rows.append({"layer": layer, "latent": lat, "steering_fp": sfp,
                     "status": "ok" if bool(cal.converged[i]) else "not_converged",
                     "strength": float(cal.strength[i]), "strength_ratio": float(cal.strength[i] / maxes[i]),
                     "kl": float(cal.kl[i]), "target_kl": s.target_kl, "steps": int(cal.steps[i]),
                     "n_prompts": len(score), "changed": changed, "top_token_ids": ids[i].tolist(),
                     "top_tokens": [tok.decode([t]) for t in ids[i].tolist()],
                     "top_increases": [float(v) for v in inc[i]]})
        for p, (prompt, c, g) in enumerate(zip(score, clean, steered[i])):
            texts.append({"layer": layer, "latent": lat, "steering_fp": sfp, "prompt_id": offset + p,
                          "prompt": prompt, "clean": clean_text[p], "steered": tok.decode(g), "clean_ids": c,
                          "steered_ids": g})
    ctx.wh.replace_partition(layer, first, last, {"steering": pl.DataFrame(rows), "steered_texts": pl.DataFrame(texts)},
                             fingerprints={sfp: ("steering", spec)})
    frame = pl.DataFrame(rows)
    secs = time.perf_counter() - t0
    return {**out, "seconds": round(secs, 2), "converged": int(cal.converged.sum()),
            "median_kl": float(frame["kl"].median()), "median_strength_ratio": float(frame["strength_ratio"].median()),
            "changed_share": round(sum(r["changed"] for r in rows) / max(1, len(rows) * len(score)), 3),
            "sample": [(r["latent"], r["top_tokens"][:5]) for r in rows[:8]]}


def load_steering(ctx: Context, layer: str, first: int, last: int, with_texts: bool = False):
    """The partition's steering rows for the current steering fingerprint (and its texts): {latent: row}, or
    ({latent: row}, {latent: [text rows]}). A missing or stale partition is an error that names the fix."""
    sfp = steering_fp(ctx, layer)
    rows = ctx.wh.query(queries.RANGE_STEERING, [layer, first, last, sfp])
    if rows.is_empty() and ctx.wh.scalar(queries.RANGE_SELECTED_COUNT, [layer, first, last]):
        raise RuntimeError(f"no steering rows of {layer} {first}-{last} for the current settings ({sfp}): "
                           "materialize the steering asset of this partition first")
    by_latent = {r["latent"]: r for r in rows.iter_rows(named=True)}
    if not with_texts:
        return by_latent
    texts: dict[int, list[dict]] = {}
    for r in ctx.wh.query(queries.RANGE_STEERED_TEXTS, [layer, first, last, sfp]).iter_rows(named=True):
        texts.setdefault(r["latent"], []).append(r)
    return by_latent, texts
