"""Stage examples: train / test / non-activating windows of a partition (the science in core.sampling)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import polars as pl

from .. import identity, sampling
from ..records import Example
from ..sampling import embeddings
from ..sampling.neighbours import decoder_rows
from ..sampling.readback import read_windows
from ..storage import queries
from ..vocabulary import token_strings
from .context import Context
from .sparse_coders import latest_coder


def _decode_fn(model_dir: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return lambda ids: tok.batch_decode(ids)


def run_examples(ctx: Context, layer: str, first: int, last: int) -> dict:
    cfg, s = ctx.cfg, ctx.cfg.sampler
    afp = ctx.wh.scalar(queries.RANGE_ACTIVATIONS_FP, [layer, last, first])
    if afp is None:
        raise RuntimeError(f"no activations for {layer} {first}-{last}: materialize activations first")
    corpus_fp = ctx.corpus_fp()
    key, embedded = None, {}
    if s.non_activating_source == "embedding":  # embed the corpus windows once (cached, resumable), outside the write
        key = embeddings.model_key(s.embedding_model)
        embedded = embeddings.ensure_window_embeddings(ctx.wh, corpus_fp, s.example_ctx_len, cfg.corpus.ctx_len,
                                                       s.embedding_model, _decode_fn(ctx.model_dir()), ctx.log)
    w_dec = None
    if s.neighbour_type == "decoder":
        coder = latest_coder(ctx.wh, layer)
        if coder is None:
            raise RuntimeError(f"neighbour_type 'decoder' needs the sparse coder of {layer}: materialize sparse_coders")
        w_dec = decoder_rows(coder["path"], first, last)
    spec = identity.sampler_spec(s, afp, cfg.latents.max_per_range, {"key": key} if key else None)
    sfp = identity.sampler_fp(spec)
    for attempt in ctx.wh.attempts():
        with attempt as con:
            ctx.wh.record_fingerprint(con, sfp, "sampler", spec)
            built = sampling.build_examples(con, s, cfg.corpus.ctx_len, cfg.latents.max_per_range, layer, first, last,
                                            corpus_fp, w_dec=w_dec, embedding_key=key)
            for table in ("example_windows", "latent_selection", "latent_neighbours"):
                ctx.wh.delete_partition(con, table, layer, first, last)
            windows = sampling.windows_frame(built, sfp, corpus_fp, afp)
            sel = sampling.selection_frame(built, layer, sfp)
            ctx.wh.insert(con, "example_windows", windows)
            ctx.wh.insert(con, "latent_selection", sel)
            n_neighbours = ctx.wh.insert(con, "latent_neighbours",
                                         sampling.neighbours_frame(built, layer, s.neighbour_type, sfp))
    splits = dict(windows.group_by("split", maintain_order=True).len().iter_rows())
    sources = dict(windows.filter(pl.col("split") == "non_activating").group_by("source", maintain_order=True).len().iter_rows())
    status = dict(sel.group_by("status", maintain_order=True).len().iter_rows())
    unexplained = sel.filter(pl.col("status").is_in(["too_rare", "dead"]))
    return {"sampler_fp": sfp, "latents": status, "examples": splits, "negative_sources": sources,
            "neighbour_rows": n_neighbours, "embedded_windows": embedded.get("embedded_windows", 0),
            "too_rare": unexplained.filter(pl.col("status") == "too_rare")["latent"].to_list(),
            "dead": unexplained.filter(pl.col("status") == "dead")["latent"].to_list(),
            "short": sel.filter((pl.col("status") == "selected") & (
                (pl.col("n_train") < s.n_train) | (pl.col("n_test") < s.n_test)
                | (pl.col("n_non_activating") < s.n_non_activating)))["latent"].to_list()}


def check_examples(ctx: Context, layer: str, first: int, last: int) -> dict:
    """The sampling rules checked on the stored partition (see core.sampling.checks)."""
    with ctx.wh.read() as con:
        return sampling.disjointness(con, layer, first, last)


def load_examples(ctx: Context, layer: str, first: int, last: int, splits: Sequence[str]) -> dict[int, dict[str, list[Example]]]:
    """The partition's examples of ``splits`` with their token strings and activations: {latent: {split: [...]}}
    (the ``examples`` view's rows, read by columns: :mod:`..sampling.readback`)."""
    vocab = np.asarray(token_strings(ctx.model_dir()), dtype=object)
    with ctx.wh.read() as con:
        w = read_windows(con, layer, first, last, splits)
    strs, acts = vocab[w.token_ids], w.acts.tolist()
    out: dict[int, dict[str, list[Example]]] = {}
    for i, (lat, split, n) in enumerate(zip(w.latent.tolist(), w.split, w.length.tolist())):
        ex = Example(int(w.example_id[i]), tuple(strs[i, :n]), tuple(acts[i][:n]), split in ("train", "test"),
                     int(w.quantile[i]))
        out.setdefault(lat, {}).setdefault(split, []).append(ex)
    return out


def current_explanations(ctx: Context, layer: str, first: int, last: int, efp: str) -> tuple[pl.DataFrame, str]:
    """(latent, explanation) of explainer ``efp``'s ok explanations made from the partition's current examples,
    and their sampler fingerprint. An explanation made from other examples (an older sampler or cache, e.g.
    before every separator was excluded) is never scored against the new ones: it is left out, with a log line,
    until the explanations are re-materialized (check scores_for_every_explanation shows it meanwhile)."""
    samp = ctx.wh.scalar(queries.RANGE_EXAMPLES_SAMPLER_FP, [layer, first, last]) or ""
    expl = ctx.wh.query(queries.RANGE_EXPLANATIONS_OF, [layer, first, last, efp])
    stale = expl.filter(pl.col("sampler_fp") != samp)
    if stale.height:
        ctx.log(f"{layer} {first}-{last}: {stale.height} explanations of {efp} were made from other examples "
                f"(sampler {stale['sampler_fp'][0]}, now {samp}): not scored; re-materialize explanations")
    return expl.filter(pl.col("sampler_fp") == samp).select("latent", "explanation"), samp
