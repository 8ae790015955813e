"""Parquet export: one directory per table or view, hive-partitioned by layer where the relation has one."""

from __future__ import annotations

from pathlib import Path

from ..storage import queries

# internal storage (the compact cache and its bookkeeping, the window embeddings) is exported through its
# readable views instead
INTERNAL = ("activation_cache", "cache_progress", "cache_complete", "window_embeddings")
VIEWS = ("activations", "example_text", "score_controls", "scorer_summary")


def exported_relations() -> list[str]:
    from ..storage.schema import TABLES

    return [t for t in TABLES if t not in INTERNAL] + list(VIEWS)


def to_parquet(wh, dest: str | Path, layer: str | None = None) -> dict:
    """Write every exported relation under ``dest``; returns rows per relation."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    counts = {}
    with wh.read() as con:
        rels = con.execute(queries.EXPORT_RELATIONS, {"names": exported_relations()}).fetchall()
        for name, by_layer in rels:
            where = queries.LAYER_FILTER if by_layer and layer else ""
            params = {"layer": layer} if where else {}
            n = con.execute(queries.EXPORT_COUNT.format(relation=name, where=where), params).fetchone()[0]
            counts[name] = n
            out = str(dest / name).replace("'", "''")
            if by_layer:
                if n:
                    con.execute(queries.EXPORT_BY_LAYER.format(relation=name, where=where, out=out), params)
            else:
                (dest / name).mkdir(parents=True, exist_ok=True)
                con.execute(queries.EXPORT_WHOLE.format(relation=name, out=out))
    return counts
