"""Writing the latent browser's files: one partition from dashboard records, then the cross-partition pages.

Every file is written to a temporary name and renamed into place, so a reader (or a concurrent run of
another partition) never sees half a page. The cross-partition pages are rebuilt from the partitions'
``partition.json`` files only (no warehouse access).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .. import dashboard
from . import pages

STATIC = Path(__file__).with_name("static")
# index row columns (rows are arrays, so a 4,608-latent partition stays ~1 MB)
COLUMNS = ("layer", "range", "latent", "status", "density", "max", "flags", "explainer", "explainer_fp", "active",
           "explanation", "page", "scores", "controls", "selection")


def range_label(first: int, last: int) -> str:
    return f"{first:05d}-{last:05d}"


def partition_dir(root: str | os.PathLike, layer: str, first: int, last: int) -> Path:
    return Path(root) / layer / range_label(first, last)


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(text.encode() if isinstance(text, str) else text)
    os.replace(tmp, path)


def _r(v, digits: int = 4):
    return None if v is None else round(v, digits)


def index_rows(records: list[dict], first: int, last: int, with_page: set[int]) -> list[list]:
    """One row per (latent, explainer); a latent without explanations gets one row with no explainer."""
    rng = range_label(first, last)
    rows = []
    for rec in records:
        flags = [k for k, v in rec["flags"].items() if v]
        base = [rec["layer"], rng, rec["latent"], rec["status"], _r(rec["density"], 8), _r(rec["max_activation"], 3),
                flags]
        page = rec["latent"] in with_page
        sel = rec.get("selection")
        if not rec["explanations"]:
            rows.append(base + [None, None, False, None, page, {}, {}, sel])
        for e in rec["explanations"]:
            ok = {s["scorer"]: s for s in e["scores"] if s["status"] == "ok"}
            rows.append(base + [e["explainer"], e["explainer_fp"], e["active"],
                                e["text"] if e["status"] == "ok" else f"({e['status']})", page,
                                {k: _r(s["value"]) for k, s in ok.items()},
                                {k: _r(s["control"]) for k, s in ok.items() if s["control"] is not None}, sel])
    return rows


def _index_page(title: str, note: str, root: str, crumbs, data_js: str) -> str:
    return pages.shell(title, pages.index_body(title, note), root, [data_js], crumbs)


def _rows_js(payload: dict) -> str:
    return "window.AUTOINTERP_INDEX = " + json.dumps(payload, separators=(",", ":")) + ";\n"


def write_partition(root: str | os.PathLike, records: list[dict], layer: str, first: int, last: int,
                    meta: dict | None = None) -> dict:
    """The partition's index, latent pages, comparison page and ``partition.json``; returns counts."""
    t0 = time.perf_counter()
    d = partition_dir(root, layer, first, last)
    with_page = {r["latent"] for r in records if r["examples"] or r["explanations"]}
    ordered = sorted(with_page)
    for i, rec in enumerate(r for r in records if r["latent"] in with_page):
        prev = ordered[i - 1] if i > 0 else None
        nxt = ordered[i + 1] if i + 1 < len(ordered) else None
        _write(d / "latents" / f"{rec['latent']}.html", pages.latent_page(rec, first, last, with_page, (prev, nxt)))
    for stale in (d / "latents").glob("*.html") if (d / "latents").exists() else []:
        if stale.stem.isdigit() and int(stale.stem) not in with_page:
            stale.unlink()
    rows = index_rows(records, first, last, with_page)
    scorers = dashboard.scorers_of(records)
    payload = {"columns": list(COLUMNS), "scorers": scorers, "rows": rows, "root": "../../",
               "partition": f"{layer} {range_label(first, last)}", "meta": meta or {}}
    _write(d / "partition.json", json.dumps(payload, separators=(",", ":")))
    _write(d / "rows.js", _rows_js(payload))
    n_lat = len(records)
    note = (f"{n_lat:,} latents, {len(with_page):,} with a page; click a column to sort, filter above. "
            f"{pages.esc((meta or {}).get('note', ''))}")
    crumbs = [("all partitions", "../../index.html"), (f"{layer} {range_label(first, last)}", None)]
    _write(d / "index.html", _index_page(f"{layer} · latents {range_label(first, last)}", note, "../../", crumbs,
                                         "rows.js"))
    _write(d / "compare.html", pages.shell(f"compare explainers · {layer} {range_label(first, last)}",
                                           pages.compare_body(explainer_pairs(records, first, last), "../../"),
                                           "../../", [], crumbs[:1] + [(crumbs[1][0], "index.html"),
                                                                        ("compare", None)]))
    copy_static(root)
    return {"latents": n_lat, "pages": len(with_page), "index_rows": len(rows), "dir": str(d),
            "seconds": round(time.perf_counter() - t0, 3)}


def copy_static(root: str | os.PathLike) -> None:
    dest = Path(root) / "static"
    dest.mkdir(parents=True, exist_ok=True)
    for f in STATIC.iterdir():
        if f.is_file() and (not (dest / f.name).exists() or (dest / f.name).read_bytes() != f.read_bytes()):
            tmp = dest / f".{f.name}.{os.getpid()}.tmp"
            shutil.copyfile(f, tmp)
            os.replace(tmp, dest / f.name)


def explainer_pairs(records: list[dict], first: int, last: int) -> list[dict]:
    """Every pair of explainers with ok explanations of the same latents, with per-scorer paired values."""
    rng = range_label(first, last)
    per: dict[str, dict[tuple[str, int], dict]] = {}
    names: dict[str, str] = {}
    for rec in records:
        for e in rec["explanations"]:
            if e["status"] != "ok":
                continue
            names[e["explainer_fp"]] = e["explainer"]
            per.setdefault(e["explainer_fp"], {})[(rec["layer"], rec["latent"])] = {
                "text": e["text"], "scores": {s["scorer"]: s["value"] for s in e["scores"]
                                              if s["status"] == "ok" and s["value"] is not None}}
    return _pairs(per, names, lambda key: rng)


def _pairs(per: dict, names: dict, range_of) -> list[dict]:
    fps = sorted(per)
    out = []
    for i, a in enumerate(fps):
        for b in fps[i + 1:]:
            shared = sorted(set(per[a]) & set(per[b]))
            if not shared:
                continue
            by_scorer: dict[str, list[tuple[float, float]]] = {}
            lat_rows = []
            for key in shared:
                sa, sb = per[a][key]["scores"], per[b][key]["scores"]
                for sc in sorted(set(sa) & set(sb)):
                    by_scorer.setdefault(sc, []).append((sa[sc], sb[sc]))
                lat_rows.append({"layer": key[0], "latent": key[1], "range": range_of(key), "a": sa, "b": sb,
                                 "text_a": per[a][key]["text"], "text_b": per[b][key]["text"]})
            out.append({"a": a, "b": b, "a_name": names[a], "b_name": names[b], "by_scorer": by_scorer,
                        "latents": lat_rows})
    return out


def _natural(path: Path) -> list:
    """layers.6 before layers.15: digit runs compare as numbers."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def write_site(root: str | os.PathLike) -> dict:
    """The cross-partition index and comparison pages, from every partition.json under ``root``."""
    root = Path(root)
    parts = sorted(root.glob("*/*/partition.json"), key=_natural)
    rows, scorers, partitions = [], {}, []
    per: dict[str, dict] = {}
    names: dict[str, str] = {}
    ranges: dict[tuple[str, int], str] = {}
    for p in parts:
        data = json.loads(p.read_text())
        cols = {c: i for i, c in enumerate(data["columns"])}
        partitions.append(data["partition"])
        rows += data["rows"]
        scorers.update(dict.fromkeys(data["scorers"]))
        for r in data["rows"]:
            fp = r[cols["explainer_fp"]]
            if fp is None or str(r[cols["explanation"]]).startswith("("):
                continue
            key = (r[cols["layer"]], r[cols["latent"]])
            names[fp] = r[cols["explainer"]]
            ranges[key] = r[cols["range"]]
            per.setdefault(fp, {})[key] = {"text": r[cols["explanation"]], "scores": r[cols["scores"]]}
    order = {"detection": 0, "fuzzing": 1}
    payload = {"columns": list(COLUMNS), "scorers": sorted(scorers, key=lambda s: (order.get(s, 2), s)),
               "rows": rows, "root": "", "partition": None, "partitions": partitions}
    _write(root / "rows.js", _rows_js(payload))
    n_lat = len({(r[0], r[2]) for r in rows})
    links = " · ".join(f'<a href="{pages.esc(x.replace(" ", "/"))}/index.html">{pages.esc(x)}</a>' for x in partitions)
    _write(root / "index.html", _index_page("latents", f"{n_lat:,} latents in {len(partitions)} partitions: {links}",
                                            "", [("all partitions", None)], "rows.js"))
    _write(root / "compare.html", pages.shell("compare explainers", pages.compare_body(
        _pairs(per, names, lambda key: ranges[key]), ""), "", [], [("all partitions", "index.html"), ("compare", None)]))
    copy_static(root)
    return {"partitions": len(partitions), "latents": n_lat, "rows": len(rows)}
