"""A latent's dashboard data: everything a researcher looks at for one latent, as plain JSON-able dicts.

One read of a latent range (``read_range``: the named queries of ``storage.queries`` on one connection)
gives, per latent (``latent_records``): firing statistics and status, heuristic flags, its activation
histogram, every explainer's explanation with every scorer's value, interval and random-explanation
control, its examples grouped by split and quantile as (token, activation) pairs, the non-activating
examples with their source, and its neighbours. The terminal card (``core.card``), the latent browser
(``core.browser``) and the exports read these records; nothing here writes.

Neighbours are the stored ``latent_neighbours`` (when the sampler needed them); otherwise the decoder-cosine
neighbours within the range, computed here from the sparse coder's ``W_dec`` (kind ``decoder``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import polars as pl

from .storage import queries

SPLITS = ("train", "test")  # activating splits, in display order
NEGATIVE_SPLITS = ("non_activating", "train_non_activating")


def read_range(wh, layer: str, first: int, last: int, corpus_fp: str | None = None,
               with_examples: bool = True) -> dict[str, pl.DataFrame | int | None]:
    """Every named query of the range on one (short) read connection."""
    p = {"layer": layer, "first": first, "last": last}
    with wh.read() as con:
        out = {name: con.execute(sql, queries.bind(sql, p)).pl() for name, sql in
               (("latents", queries.LATENTS), ("explanations", queries.EXPLANATIONS), ("scores", queries.SCORES),
                ("neighbours", queries.NEIGHBOURS))}
        out["examples"] = con.execute(queries.EXAMPLES, queries.bind(queries.EXAMPLES, p)).pl() if with_examples \
            else None
        out["explainers"] = con.execute(queries.EXPLAINERS).pl()
        out["corpus_tokens"] = con.execute(queries.CORPUS_TOKENS, queries.bind(queries.CORPUS_TOKENS, p)).fetchone()[0]
        coder = con.execute(queries.LATEST_CODER, {"layer": layer}).pl()
        out["coder_path"] = coder["path"][0] if coder.height else None
        ids = [t for t in out["latents"]["top_token"].to_list() if t is not None]
        out["top_tokens"] = dict(con.execute(queries.TOKEN_TEXT, {"corpus": corpus_fp, "ids": ids}).fetchall()) \
            if corpus_fp and ids else {}
    return out


def decoder_neighbours_of(coder_path: str | None, first: int, last: int, latents: list[int],
                          n: int = 10) -> pl.DataFrame | None:
    """Decoder-cosine neighbours of ``latents`` among the range's latents, or None without a readable W_dec."""
    if not coder_path or not latents or not Path(coder_path).exists():
        return None
    from .sampling.neighbours import decoder_neighbours, decoder_rows

    try:
        w = decoder_rows(coder_path, first, last)
    except (ValueError, OSError):
        return None
    return decoder_neighbours(w, first, latents, n).with_columns(kind=pl.lit("decoder"))


def _num(v):
    """JSON-safe number: NaN / inf -> None."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return v


def _example(r: dict) -> dict:
    return {"split": r["split"], "example_id": r["example_id"], "quantile": r["quantile"],
            "max": _num(float(r["max_activation"])), "text": r["text"],
            "tokens": [[t["token"], round(float(t["activation"]), 4)] for t in r["tokens"]],
            "source": r["source"], "neighbour": r["neighbour"],
            "similarity": None if r["similarity"] is None else round(float(r["similarity"]), 4)}


NO_LLM = "no LLM"  # the model of a rule-made explanation (a baseline, the calibration's gold)


def latent_records(data: dict, names: dict[str, str] | None = None, active_fp: str | None = None,
                   latents: Iterable[int] | None = None, n_neighbours: int = 10,
                   first: int | None = None, last: int | None = None) -> list[dict]:
    """One dashboard record per latent of the range (or of ``latents``), explainers named by ``names`` (fp -> name)."""
    names = names or {}
    lat_frame = data["latents"]
    if latents is not None:
        lat_frame = lat_frame.filter(pl.col("latent").is_in(list(latents)))
    models = {r["explainer_fp"]: r for r in data["explainers"].iter_rows(named=True)}
    scores: dict[tuple[int, str], list[dict]] = {}
    for r in data["scores"].iter_rows(named=True):
        v, c = _num(r["value"]), _num(r["control_value"])
        scores.setdefault((r["latent"], r["explainer_fp"]), []).append({
            "scorer": r["scorer"], "metric": r["metric"], "value": v, "status": r["status"],
            "ci": [_num(r["ci_low"]), _num(r["ci_high"])], "control": c,
            "control_ci": [_num(r["control_ci_low"]), _num(r["control_ci_high"])],
            "difference": None if v is None or c is None else v - c, "n": r["n"], "n_failed": r["n_failed"]})
    expl: dict[int, list[dict]] = {}
    for r in data["explanations"].iter_rows(named=True):
        fp = r["explainer_fp"]
        expl.setdefault(r["latent"], []).append({
            "explainer_fp": fp, "explainer": names.get(fp, fp), "active": fp == active_fp,
            "model": (models.get(fp) or {}).get("model") or r["explainer_model"] or NO_LLM, "status": r["status"],
            "text": r["explanation"], "error": r["error"], "scores": scores.get((r["latent"], fp), [])})
    examples: dict[int, list[dict]] = {}
    if data.get("examples") is not None:
        for r in data["examples"].iter_rows(named=True):
            examples.setdefault(r["latent"], []).append(_example(r))
    neigh = data["neighbours"]
    with_examples = [lat for lat in lat_frame["latent"].to_list() if lat in examples]
    if neigh.is_empty() and first is not None and with_examples:
        neigh = decoder_neighbours_of(data.get("coder_path"), first, last, with_examples, n_neighbours)
        neigh = neigh if neigh is not None else data["neighbours"]
    nb: dict[int, list[dict]] = {}
    for r in neigh.iter_rows(named=True):
        if r["rank"] <= n_neighbours:
            nb.setdefault(r["latent"], []).append({"latent": r["neighbour"], "similarity": round(float(r["similarity"]), 4),
                                                   "kind": r["kind"]})
    n_tokens = data.get("corpus_tokens")
    out = []
    for r in lat_frame.iter_rows(named=True):
        lat = r["latent"]
        exs = examples.get(lat, [])
        # active explainer first, then the rest in the order they were made
        ex_list = sorted(expl.get(lat, []), key=lambda e: not e["active"])
        out.append({
            "layer": r["layer"], "latent": lat, "status": r["status"], "selection": r["selection"],
            "n_firing": r["n_firing"], "n_windows": r["n_windows"], "n_tokens": n_tokens,
            "density": _num(r["density"]), "max_activation": _num(r["max_activation"]),
            "mean_activation": _num(r["mean_activation"]), "histogram": list(r["histogram"] or []),
            "flags": {k: bool(r[f"flag_{k}"]) for k in ("positional", "single_token", "unigram")},
            "position_u": _num(r["position_u"]), "top_token": data.get("top_tokens", {}).get(r["top_token"]),
            "top_token_share": _num(r["top_token_share"]), "tokens_for_mass": r["tokens_for_mass"],
            "explanations": ex_list,
            "examples": [e for e in exs if e["split"] in SPLITS],
            "non_activating": [e for e in exs if e["split"] == "non_activating"],
            "neighbours": nb.get(lat, []),
        })
    return out


def primary(explanation: dict, scorer: str) -> dict | None:
    """The score dict of ``scorer`` for one explanation record, or None."""
    return next((s for s in explanation["scores"] if s["scorer"] == scorer), None)


def scorers_of(records: list[dict]) -> list[str]:
    """Every scorer that scored some explanation of ``records``, detection and fuzzing first."""
    seen: dict[str, None] = {}
    for rec in records:
        for e in rec["explanations"]:
            for s in e["scores"]:
                seen[s["scorer"]] = None
    order = {"detection": 0, "fuzzing": 1}
    return sorted(seen, key=lambda s: (order.get(s, 2), s))
