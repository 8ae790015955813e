"""Neuronpedia export: the layout and fields of Neuronpedia's dataset exports, which its importer reads.

Layout (one directory per model and source, as Neuronpedia's importer downloads it)::

    <dest>/<model_id>/<source_id>/model.jsonl, release.jsonl, sourceset.jsonl, source.jsonl
    <dest>/<model_id>/<source_id>/features/batch-0.jsonl.gz       table Neuron: one feature per latent
    <dest>/<model_id>/<source_id>/activations/batch-0.jsonl.gz    table Activation: one activating example each
    <dest>/<model_id>/<source_id>/explanations/batch-0.jsonl.gz   table Explanation: one per explained latent

``source_id`` is ``<layer number>-<source set>`` (Neuronpedia's convention, e.g. ``6-autointerp-res``);
each JSONL line's keys are columns of the Neuronpedia table (its importer inserts the keys that are
columns). Activation values are per token; ``binMin`` / ``binMax`` are the example's quantile bin.
Explanations carry no model or type name (those reference Neuronpedia's own tables); the explainer and
every score with its interval and control go into ``notes``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

from .. import dashboard

# Neuronpedia's default creator id in its export tools; the importer needs an existing user id
DEFAULT_CREATOR_ID = "clkht01d40000jv08hvalcvly"
TABLE_FILES = {"features": "Neuron", "activations": "Activation", "explanations": "Explanation"}


def source_id(layer: str, source_set: str) -> str:
    m = re.search(r"(\d+)", layer)
    return f"{m.group(1) if m else re.sub(r'[^A-Za-z0-9]+', '_', layer)}-{source_set}"


def _id(*parts) -> str:
    """A stable 25-character id (Neuronpedia ids are cuids: any unique string works)."""
    return "c" + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


def _jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _notes(e: dict) -> str:
    parts = [f"autointerp explainer {e['explainer']} ({e['explainer_fp']}, model {e.get('model') or '?'})"]
    for s in e["scores"]:
        if s["status"] != "ok" or s["value"] is None:
            continue
        ci = f" [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]" if s["ci"][0] is not None else ""
        ctl = f", control {s['control']:.3f}" if s["control"] is not None else ""
        parts.append(f"{s['scorer']} {s['metric']} {s['value']:.3f}{ci}{ctl}")
    return "; ".join(parts)


def to_neuronpedia(wh, dest: str | Path, layers: list[str], explainer_fp: str, corpus_fp: str, model_id: str,
                   source_set: str = "autointerp-res", explainer_name: str | None = None,
                   creator_id: str = DEFAULT_CREATOR_ID, num_latents: dict[str, int] | None = None) -> dict:
    """Write every latent with stats of ``layers``; returns counts (features, activations, explanations)."""
    now = datetime.now(timezone.utc).isoformat()
    model_id = re.sub(r"[^A-Za-z0-9._-]+", "-", model_id).strip("-")
    counts = {"features": 0, "activations": 0, "explanations": 0}
    for layer in layers:
        data = dashboard.read_range(wh, layer, 0, 2**31 - 1, corpus_fp)
        if data["latents"].is_empty():
            continue
        recs = dashboard.latent_records(data, {explainer_fp: explainer_name or explainer_fp}, explainer_fp)
        sid = source_id(layer, source_set)
        d = Path(dest) / model_id / sid
        width = (num_latents or {}).get(layer) or (max(r["latent"] for r in recs) + 1)
        _jsonl(d / "model.jsonl", [{"id": model_id, "displayNameShort": model_id, "displayName": model_id,
                                    "creatorId": creator_id, "layers": len(layers), "neuronsPerLayer": width,
                                    "owner": "", "visibility": "PUBLIC", "instruct": False, "createdAt": now}])
        _jsonl(d / "release.jsonl", [{"name": source_set, "description": f"autointerp_assets export of {model_id}",
                                      "creatorName": "autointerp_assets", "creatorId": creator_id, "urls": [],
                                      "visibility": "PUBLIC", "createdAt": now}])
        _jsonl(d / "sourceset.jsonl", [{"modelId": model_id, "name": source_set, "description": "SAE latents "
                                        "explained and scored by autointerp_assets", "creatorName": "autointerp_assets",
                                        "creatorId": creator_id, "urls": [], "visibility": "PUBLIC",
                                        "hasDashboards": True, "releaseName": source_set, "createdAt": now}])
        _jsonl(d / "source.jsonl", [{"id": sid, "modelId": model_id, "setName": source_set, "creatorId": creator_id,
                                     "hasDashboards": True, "visibility": "PUBLIC", "num_prompts": None,
                                     "num_tokens_in_prompt": None, "dataset": None, "notes": f"hookpoint {layer}",
                                     "createdAt": now}])
        features, acts, expls = [], [], []
        for r in recs:
            hist = r["histogram"] or []
            top = r["max_activation"] or 0.0
            features.append({
                "modelId": model_id, "layer": sid, "index": str(r["latent"]), "creatorId": creator_id, "createdAt": now,
                "maxActApprox": top, "frac_nonzero": r["density"] or 0.0, "sourceSetName": source_set,
                "freq_hist_data_bar_heights": [float(c) for c in hist],
                "freq_hist_data_bar_values": [top * (i + 0.5) / len(hist) for i in range(len(hist))] if hist else [],
                "topkCosSimIndices": [n["latent"] for n in r["neighbours"] if n["kind"] == "decoder"],
                "topkCosSimValues": [n["similarity"] for n in r["neighbours"] if n["kind"] == "decoder"]})
            for e in r["examples"]:
                vals = [float(t[1]) for t in e["tokens"]]
                q = e["quantile"]
                acts.append({
                    "id": _id(layer, r["latent"], e["split"], e["example_id"]), "tokens": [t[0] for t in e["tokens"]],
                    "modelId": model_id, "layer": sid, "index": str(r["latent"]), "creatorId": creator_id,
                    "createdAt": now, "maxValue": max(vals), "maxValueTokenIndex": vals.index(max(vals)),
                    "minValue": min(vals), "values": vals, "dataIndex": str(e["example_id"]),
                    "dataSource": f"{layer} {e['split']} quantile {q}", "binMin": None, "binMax": None,
                    "binContains": None, "qualifyingTokenIndex": vals.index(max(vals))})
            for e in r["explanations"]:
                if e["status"] != "ok" or e["explainer_fp"] != explainer_fp:
                    continue
                expls.append({"id": _id(layer, r["latent"], e["explainer_fp"]), "modelId": model_id, "layer": sid,
                              "index": str(r["latent"]), "description": e["text"], "authorId": creator_id,
                              "notes": _notes(e), "createdAt": now})
        _jsonl_gz(d / "features" / "batch-0.jsonl.gz", features)
        _jsonl_gz(d / "activations" / "batch-0.jsonl.gz", acts)
        _jsonl_gz(d / "explanations" / "batch-0.jsonl.gz", expls)
        counts["features"] += len(features)
        counts["activations"] += len(acts)
        counts["explanations"] += len(expls)
    return counts


def read_neuronpedia(dest: str | Path) -> dict[str, list[dict]]:
    """Every record of an export, by Neuronpedia table name (Neuron, Activation, Explanation, Model, …)."""
    out: dict[str, list[dict]] = {}
    for f in sorted(Path(dest).glob("*/*/*.jsonl")):
        table = {"model": "Model", "release": "SourceRelease", "sourceset": "SourceSet", "source": "Source"}[f.stem]
        out.setdefault(table, []).extend(json.loads(x) for x in f.read_text().splitlines() if x.strip())
    for sub, table in TABLE_FILES.items():
        for f in sorted(Path(dest).glob(f"*/*/{sub}/*.jsonl.gz")):
            with gzip.open(f, "rt", encoding="utf-8") as fh:
                out.setdefault(table, []).extend(json.loads(x) for x in fh if x.strip())
    return out
