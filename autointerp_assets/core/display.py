"""Numbers and tables for people: rounded values, and tables that fit a terminal (or CSV / JSON / markdown).

``render(frame, fmt, width)`` prints a polars frame as ``table`` (aligned columns within ``width``: a
result wider than that is folded into blocks of columns, each repeating the leading key columns, so no
header ever wraps), ``csv``, ``json`` (one object per row, raw values) or ``markdown``. ``number`` and
``rounded`` are the one place that decides how a value reads: 3 decimals, thousands separators,
``0`` for float noise such as ``-5.55e-17``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import polars as pl

FORMATS = ("table", "csv", "json", "markdown")
MAX_CELL = 48  # characters of one table cell before it is cut with …
NOISE = 1e-12  # |x| below this is float noise: shown and stored in metadata as 0


def number(v: Any, digits: int = 3) -> str:
    """A value as a person reads it: '–' for missing, 1,234 for counts, 0.538 for floats, 1.2e-05 for tiny ones."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        if abs(v) < NOISE:
            return "0"
        if abs(v) >= 10_000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:,.1f}"
        if abs(v) < 10 ** -digits:
            return f"{v:.1e}"
        return f"{v:.{digits}f}"
    return str(v)


def rounded(v: Any, sig: int = 4) -> Any:
    """``v`` with every float rounded to ``sig`` significant digits (noise -> 0.0), through lists and dicts:
    what Dagster metadata shows (raw values stay in SQL)."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            return v
        if abs(v) < NOISE:
            return 0.0
        return round(v, max(0, sig - 1 - int(math.floor(math.log10(abs(v))))))
    if isinstance(v, (list, tuple)):
        return [rounded(x, sig) for x in v]
    if isinstance(v, dict):
        return {k: rounded(x, sig) for k, x in v.items()}
    return v


ID_COLUMNS = ("latent", "neighbour", "rank", "row_id", "example_id", "batch_index", "first_latent", "last_latent")


def _cell(v: Any, limit: int | None = MAX_CELL, plain_int: bool = False) -> str:
    if isinstance(v, (list, tuple)):
        s = "[" + ", ".join(_cell(x, None) for x in v) + "]"
    elif isinstance(v, dict):
        s = "{" + ", ".join(f"{k}: {_cell(x, None)}" for k, x in v.items()) + "}"
    elif plain_int and isinstance(v, int) and not isinstance(v, bool):
        s = str(v)  # an identifier, not a count: no thousands separator
    else:
        s = number(v)
    s = s.replace("\n", "↵").replace("\t", " ")
    return s if limit is None or len(s) <= limit else s[:limit - 1] + "…"


def _numeric(dtype) -> bool:
    return dtype.is_numeric()


def _key_columns(frame: pl.DataFrame) -> int:
    """How many leading columns identify a row (repeated in every folded block): the leading text columns
    (layer, latent range, explainer, …), at most 3, or the first column."""
    n = 0
    for name, dtype in zip(frame.columns, frame.dtypes):
        if dtype == pl.Utf8 and n < 3:
            n += 1
        else:
            break
    if n == 0 and frame.columns and frame.columns[0] in ("layer", "latent"):
        n = 2 if len(frame.columns) > 1 and frame.columns[1] in ("layer", "latent") else 1
    return max(n, 1) if frame.width > 1 else frame.width


def table(frame: pl.DataFrame, width: int = 100) -> str:
    """Aligned columns within ``width``; wider results folded into column blocks that repeat the key columns."""
    if frame.width == 0:
        return "(no columns)"
    full = {c: [_cell(v, None, c in ID_COLUMNS or c.endswith("_id")) for v in frame[c].to_list()]
            for c in frame.columns}
    cut = lambda x, n: x if len(x) <= n else x[:n - 1] + "…"  # noqa: E731
    cells = {c: [cut(x, MAX_CELL) for x in full[c]] for c in frame.columns}
    last = frame.columns[-1]
    numeric = {c: _numeric(d) for c, d in zip(frame.columns, frame.dtypes)}
    widths = {c: max([len(c)] + [len(x) for x in cells[c]]) for c in frame.columns}
    room = width - sum(widths[c] + 2 for c in frame.columns[:-1])
    if not numeric[last] and room > MAX_CELL:  # a text column at the end gets the rest of the line
        cells[last] = [cut(x, room) for x in full[last]]
        widths[last] = max([len(last)] + [len(x) for x in cells[last]])
    keys = frame.columns[:_key_columns(frame)]
    blocks, cur = [], []
    key_w = sum(widths[k] + 2 for k in keys)
    for c in frame.columns[len(keys):]:
        if cur and key_w + sum(widths[x] + 2 for x in cur) + widths[c] > width:
            blocks.append(cur)
            cur = []
        cur.append(c)
    blocks.append(cur)
    out = []
    for b in blocks:
        cols = [*keys, *b]
        line = lambda vals: "  ".join(v.rjust(widths[c]) if numeric[c] else v.ljust(widths[c])  # noqa: E731
                                      for c, v in zip(cols, vals)).rstrip()
        out.append(line(cols))
        out.append("  ".join("─" * widths[c] for c in cols))
        out += [line([cells[c][i] for c in cols]) for i in range(frame.height)]
        out.append("")
    out.append(f"({frame.height:,} row{'s' if frame.height != 1 else ''})")
    return "\n".join(out)


def markdown(frame: pl.DataFrame) -> str:
    cols = frame.columns
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if _numeric(d) else "---" for d in frame.dtypes) + "|"]
    for row in frame.iter_rows():
        lines.append("| " + " | ".join(_cell(v, None, c in ID_COLUMNS).replace("|", "\\|")
                                       for c, v in zip(cols, row)) + " |")
    return "\n".join(lines)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def render(frame: pl.DataFrame, fmt: str = "table", width: int = 100) -> str:
    """``frame`` as text in ``fmt`` (table | csv | json | markdown)."""
    if fmt == "table":
        return table(frame, width)
    if fmt == "markdown":
        return markdown(frame)
    if fmt == "json":
        return json.dumps([_jsonable(r) for r in frame.iter_rows(named=True)], indent=None, default=str)
    if fmt == "csv":
        flat = frame.with_columns([pl.col(c).map_elements(lambda v: json.dumps(_jsonable(v), default=str),
                                                          return_dtype=pl.Utf8)
                                   for c, d in zip(frame.columns, frame.dtypes) if d.is_nested()])
        return flat.write_csv().rstrip("\n")
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
