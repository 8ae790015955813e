"""delphi export: its per-latent result files, so delphi's own analysis (``delphi.log.result_analysis``) reads
our explanations and detection / fuzzing scores.

    <dest>/explanations/<layer>_latent<N>.txt        a JSON string (the explanation)
    <dest>/scores/detection/<layer>_latent<N>.txt    a JSON list, one classifier output per scored example:
    <dest>/scores/fuzz/<layer>_latent<N>.txt           str_tokens, activations, distance, activating,
                                                       prediction, probability, correct
    <dest>/log/hookpoint_firing_counts.pt            {layer: LongTensor[num_latents]} firing counts
    <dest>/run_config.json                           hookpoints, scorers and min_examples

As in delphi, ``activating`` is the item's ground truth (for fuzzing: are the highlights right),
``distance`` the example's quantile for activating windows and -1 (random) or -similarity (neighbour /
embedding negatives) for non-activating ones; ``prediction`` is null where the scorer's batch failed.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from ..storage import queries

SCORER_DIRS = {"detection": "detection", "fuzzing": "fuzz"}


def _distance(r: dict) -> float:
    if r["activating"]:
        return int(r["quantile"])
    if r["source"] in ("neighbours", "embedding") and r["similarity"] is not None:
        return -float(r["similarity"])
    return -1


def to_delphi(wh, dest: str | Path, layers: list[str], explainer_fp: str, corpus_fp: str | None = None,
              min_examples: int | None = None) -> dict:
    """Write the explainer's explanations and detection / fuzzing items of ``layers``; returns counts."""
    import torch

    dest = Path(dest)
    counts = {"explanations": 0, "score_files": 0, "items": 0}
    firing = {}
    for layer in layers:
        with wh.read() as con:
            expl = con.execute(queries.LAYER_EXPLANATIONS_IN_ORDER, [layer, explainer_fp]).fetchall()
            items = con.execute(queries.SCORE_ITEMS_WITH_TOKENS, {"explainer": explainer_fp, "layer": layer}).pl()
            stats = con.execute(queries.LAYER_FIRING_COUNTS, [layer]).fetchall()
            width = con.execute(queries.LAYER_NUM_LATENTS, [layer]).fetchone()[0]
        width = width or (max((s[0] for s in stats), default=-1) + 1)
        counts_t = torch.zeros(width, dtype=torch.long)
        for lat, n in stats:
            counts_t[lat] = int(n)
        firing[layer] = counts_t
        (dest / "explanations").mkdir(parents=True, exist_ok=True)
        for lat, text in expl:
            (dest / "explanations" / f"{layer}_latent{lat}.txt").write_text(json.dumps(text))
        counts["explanations"] += len(expl)
        for (lat, scorer), grp in items.group_by(["latent", "scorer"], maintain_order=True):
            out = []
            for r in grp.iter_rows(named=True):
                toks = r["tokens"] or []
                pred = r["prediction"]
                out.append({"str_tokens": [t["token"] for t in toks],
                            "activations": [float(t["activation"]) for t in toks],
                            "distance": _distance(r), "activating": bool(r["truth"]), "prediction": pred,
                            "probability": r["probability"],
                            "correct": None if pred is None else bool(pred) == bool(r["truth"])})
            d = dest / "scores" / SCORER_DIRS[scorer]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{layer}_latent{lat}.txt").write_text(json.dumps(out))
            counts["score_files"] += 1
            counts["items"] += len(out)
    (dest / "log").mkdir(parents=True, exist_ok=True)
    torch.save(firing, dest / "log" / "hookpoint_firing_counts.pt")
    (dest / "run_config.json").write_text(json.dumps({
        "hookpoints": layers, "scorers": sorted(set(SCORER_DIRS.values())), "explainer_fp": explainer_fp,
        "constructor_cfg": {"min_examples": min_examples}, "exported_by": "autointerp_assets"}, indent=1))
    return counts


def read_delphi(dest: str | Path) -> tuple[dict[tuple[str, int], str], pl.DataFrame]:
    """(explanations by (layer, latent), one row per score item: layer, latent, score_type and the item's
    fields), reading the files the way delphi's analysis does (latent index after 'latent' in the name)."""
    dest = Path(dest)
    expl = {}
    for f in sorted((dest / "explanations").glob("*.txt")):
        layer, _, idx = f.stem.rpartition("_latent")
        expl[(layer, int(idx))] = json.loads(f.read_text())
    rows = []
    for d in sorted(p for p in (dest / "scores").iterdir() if p.is_dir()):
        for f in sorted(d.glob("*.txt")):
            layer, _, idx = f.stem.rpartition("_latent")
            for ex in json.loads(f.read_text()):
                rows.append({"layer": layer, "latent": int(f.stem.split("latent")[-1]), "score_type": d.name,
                             "text": "".join(ex["str_tokens"]), **{k: ex[k] for k in (
                                 "distance", "activating", "prediction", "probability", "correct")}})
    return expl, pl.DataFrame(rows)
