"""Materialization metadata helpers: small markdown tables and plots the UI renders without SQL."""

from __future__ import annotations

import base64
import io
from typing import Mapping, Sequence

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


PLOT_COLOURS = ((66, 133, 244), (234, 113, 36), (52, 168, 83), (171, 71, 188))


def histogram_png(series: Mapping[str, Sequence[float]], lo: float = 0.0, hi: float = 1.0, bins: int = 10,
                  title: str = "", size: tuple[int, int] = (520, 260)) -> bytes:
    """A grouped bar histogram of each series over [lo, hi] as PNG bytes (drawn with Pillow)."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = max(size[0], 60 + 150 * len(series)), size[1]  # room for every legend entry
    left, right, top, bottom = 40, 10, 28, 34
    counts = {}
    for name, values in series.items():
        c = [0] * bins
        for v in values:
            if v is not None:
                c[min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))] += 1
        counts[name] = c
    top_count = max([max(c) for c in counts.values()] + [1])
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    d.text((left, 6), title, fill="black", font=font)
    d.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
    for t in range(0, top_count + 1, max(1, top_count // 4)):
        y = h - bottom - (h - top - bottom) * t / top_count
        d.line([(left - 4, y), (left, y)], fill="black")
        d.text((4, y - 6), str(t), fill="black", font=font)
    slot = (w - left - right) / bins
    bar = slot * 0.8 / max(1, len(counts))
    for i in range(bins + 1):
        x = left + i * slot
        d.text((x - 8, h - bottom + 4), f"{lo + (hi - lo) * i / bins:.1f}", fill="black", font=font)
    for j, (name, c) in enumerate(counts.items()):
        colour = PLOT_COLOURS[j % len(PLOT_COLOURS)]
        for i, n in enumerate(c):
            if n:
                x0 = left + i * slot + slot * 0.1 + j * bar
                d.rectangle([x0, h - bottom - (h - top - bottom) * n / top_count, x0 + bar - 1, h - bottom - 1],
                            fill=colour)
        lx = w - right - 150 * (len(counts) - j)
        d.rectangle([lx, h - 14, lx + 10, h - 4], fill=colour)
        d.text((lx + 14, h - 16), f"{name} (n={sum(c)})", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def plot_md(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG embedded as a data URL in markdown metadata (the UI's markdown renderer allows data: images)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")
