"""Materialization metadata helpers: small markdown plots the UI renders without SQL."""

from __future__ import annotations

from typing import Sequence

import dagster as dg


def histogram_md(values: Sequence[float], lo: float, hi: float, bins: int = 10, title: str = "") -> dg.MetadataValue:
    vals = [v for v in values if v is not None]
    counts = [0] * bins
    for v in vals:
        i = min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))
        counts[i] += 1
    top = max(counts) or 1
    lines = [f"**{title}** (n={len(vals)})", "", "| bin | count | |", "|---|---:|---|"]
    for i, c in enumerate(counts):
        a = lo + (hi - lo) * i / bins
        lines.append(f"| {a:.2f}–{a + (hi - lo) / bins:.2f} | {c} | {'█' * round(20 * c / top)} |")
    return dg.MetadataValue.md("\n".join(lines))


def table_md(rows: Sequence[dict]) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md("(none)")
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return dg.MetadataValue.md("\n".join(lines))
