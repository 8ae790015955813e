"""What the scores asset plots: per-latent values of each scorer, real vs control, and medians across layers."""

from __future__ import annotations

from ..storage import queries
from .context import Context

RANGES = {"correlation": (-1.0, 1.0)}  # every other primary metric lies in [0, 1]


def partition_values(ctx: Context, layer: str, first: int, last: int, efp: str) -> dict[str, dict]:
    """{scorer: {"metric", "real": [...], "control": [...]}} of one partition and explainer."""
    out: dict[str, dict] = {}
    with ctx.wh.read() as con:
        rows = con.execute(queries.SCORE_VALUES, {"layer": layer, "first": first, "last": last,
                                                  "explainer": efp}).fetchall()
    for scorer, control, metric, values in rows:
        d = out.setdefault(scorer, {"metric": metric, "real": [], "control": []})
        d["control" if control else "real"] = list(values)
        if not control:
            d["metric"] = metric
    return out


def layer_medians(ctx: Context, efp: str) -> list[dict]:
    """Per layer and scorer over every materialized latent range: median, IQR, control median."""
    with ctx.wh.read() as con:
        rows = [dict(zip(("layer", "scorer", "metric", "latents", "median", "q25", "q75", "median_control"), r))
                for r in con.execute(queries.LAYER_MEDIANS, {"explainer": efp}).fetchall()]
    order = {layer: i for i, layer in enumerate(ctx.cfg.layer_keys())}  # the config's hookpoint order
    return sorted(rows, key=lambda r: (r["scorer"], order.get(r["layer"], len(order)), r["layer"]))


def metric_range(metric: str) -> tuple[float, float]:
    return RANGES.get(metric, (0.0, 1.0))
