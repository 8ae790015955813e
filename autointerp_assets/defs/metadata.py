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
    lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|").replace("\n", " ") for c in cols) + " |" for r in rows]
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


def medians_png(panels: Mapping[str, Sequence[dict]], ranges: Mapping[str, tuple[float, float]], title: str = "",
                panel_w: int = 200, h: int = 240) -> bytes:
    """One panel per scorer: per layer the median (dot) and IQR (bar) of the real values, and the control's
    median (hollow square), on the scorer's metric scale, as PNG bytes (drawn with Pillow)."""
    from PIL import Image, ImageDraw, ImageFont

    real, ctl = PLOT_COLOURS[0], PLOT_COLOURS[1]
    w = max(420, 50 + panel_w * len(panels))
    top, bottom, left = 40, 40, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    d.text((left, 6), title, fill="black", font=font)
    d.rectangle([left, 22, left + 8, 30], fill=real)
    d.text((left + 12, 20), "real: median, IQR", fill="black", font=font)
    d.rectangle([left + 130, 22, left + 138, 30], outline=ctl, width=2)
    d.text((left + 142, 20), "control median", fill="black", font=font)
    for p, (scorer, rows) in enumerate(panels.items()):
        lo, hi = ranges[scorer]
        x0 = left + p * panel_w
        y = lambda v: h - bottom - (h - top - bottom) * (min(max(v, lo), hi) - lo) / (hi - lo)  # noqa: E731
        d.line([(x0, top), (x0, h - bottom), (x0 + panel_w - 20, h - bottom)], fill="black")
        for t in (lo, (lo + hi) / 2, hi):
            d.line([(x0 - 3, y(t)), (x0, y(t))], fill="black")
            d.text((x0 - 30 if p == 0 else x0 + 2, y(t) - 6), f"{t:.1f}", fill="grey", font=font)
        d.line([(x0, y((lo + hi) / 2)), (x0 + panel_w - 20, y((lo + hi) / 2))], fill=(220, 220, 220))
        d.text((x0 + 4, h - 14), scorer, fill="black", font=font)
        slot = (panel_w - 30) / max(1, len(rows))
        for i, r in enumerate(rows):
            cx = x0 + 10 + slot * (i + 0.5)
            if r["q25"] is not None:
                d.rectangle([cx - 3, y(r["q75"]), cx + 3, y(r["q25"])], fill=(200, 214, 245))
            d.ellipse([cx - 4, y(r["median"]) - 4, cx + 4, y(r["median"]) + 4], fill=real)
            if r["median_control"] is not None:
                c = y(r["median_control"])
                d.rectangle([cx + 6, c - 4, cx + 14, c + 4], outline=ctl, width=2)
            d.text((cx - 18, h - bottom + 4), r["layer"][-9:], fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def readable(metadata: Mapping) -> dict:
    """Metadata for people: floats (also inside lists and dicts) rounded to 4 significant digits, float noise
    such as -5.55e-17 shown as 0; MetadataValue objects pass through (raw values stay in SQL)."""
    from ..core.display import rounded

    return {k: (v if isinstance(v, dg.MetadataValue) else rounded(v)) for k, v in metadata.items()}


def _colour(v: float | None) -> tuple[int, int, int]:
    """-1 (blue) .. 0 (white) .. +1 (red); None grey."""
    if v is None:
        return (200, 200, 200)
    v = max(-1.0, min(1.0, v))
    t = int(255 * (1 - abs(v)))
    return (255, t, t) if v >= 0 else (t, t, 255)


def heatmap_png(labels: Sequence[str], values: Mapping[tuple[str, str], float | None], title: str = "",
                cell: int = 54) -> bytes:
    """A symmetric matrix (e.g. rank correlations between scorers) as coloured cells with their values."""
    from PIL import Image, ImageDraw, ImageFont

    n, left, top = len(labels), 90, 40
    img = Image.new("RGB", (left + cell * n + 10, top + cell * n + 10), "white")
    d, font = ImageDraw.Draw(img), ImageFont.load_default()
    d.text((6, 6), title, fill="black", font=font)
    for i, a in enumerate(labels):
        d.text((4, top + i * cell + cell // 2 - 6), a[:13], fill="black", font=font)
        d.text((left + i * cell + 2, top - 14), a[:8], fill="black", font=font)
        for j, b in enumerate(labels):
            v = 1.0 if a == b else values.get((a, b), values.get((b, a)))
            x, y = left + j * cell, top + i * cell
            d.rectangle([x, y, x + cell - 2, y + cell - 2], fill=_colour(v))
            d.text((x + 8, y + cell // 2 - 6), "–" if v is None else f"{v:+.2f}", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def scatter_png(series: Mapping[str, Sequence[tuple[float, float]]], title: str = "", x_label: str = "",
                y_label: str = "", lo: float = -0.2, hi: float = 1.0, size: int = 300) -> bytes:
    """Points of each series in [lo, hi]^2 (e.g. best-match explanation similarity vs decoder cosine)."""
    from PIL import Image, ImageDraw, ImageFont

    left, top, bottom = 40, 26, 40
    img = Image.new("RGB", (left + size + 170, top + size + bottom), "white")
    d, font = ImageDraw.Draw(img), ImageFont.load_default()
    d.text((left, 6), title, fill="black", font=font)
    d.rectangle([left, top, left + size, top + size], outline="black")
    d.text((left, top + size + 6), f"{x_label}  [{lo:.1f}, {hi:.1f}]", fill="black", font=font)
    d.text((4, top + size + 22), f"y: {y_label}", fill="black", font=font)

    def px(x, y):
        return left + (x - lo) / (hi - lo) * size, top + size - (y - lo) / (hi - lo) * size

    for j, (name, pts) in enumerate(series.items()):
        colour = PLOT_COLOURS[j % len(PLOT_COLOURS)]
        for x, y in pts:
            if x is not None and y is not None:
                cx, cy = px(max(lo, min(hi, x)), max(lo, min(hi, y)))
                d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
        d.rectangle([left + size + 10, top + 14 * j, left + size + 20, top + 14 * j + 10], fill=colour)
        d.text((left + size + 24, top + 14 * j - 1), f"{name} (n={len(pts)})", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
