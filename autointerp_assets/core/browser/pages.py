"""HTML of the latent browser's pages, rendered in Python from dashboard records (no template engine).

Latent pages are complete without JavaScript (the script only adds sorting and the token tooltip);
index pages hold a table that ``static/browser.js`` fills from the page's ``rows.js``.
"""

from __future__ import annotations

import html
import json
import statistics

from ..display import number

ASSET_VERSION = "3"  # bump when static/ changes, so browsers do not keep an old copy


def esc(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def shell(title: str, body: str, root: str, scripts: list[str] = (), crumbs: list[tuple[str, str | None]] = ()) -> str:
    """A whole page: ``root`` is the relative path to the site root ('' or '../../'), ``crumbs`` (label, href)."""
    nav = " › ".join(f'<a href="{esc(h)}">{esc(t)}</a>' if h else f"<span>{esc(t)}</span>" for t, h in crumbs)
    js = "".join(f'<script src="{esc(s)}"></script>' for s in scripts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="{root}static/browser.css?v={ASSET_VERSION}"></head>'
            f'<body><header><a class="brand" href="{root}index.html">autointerp</a><nav>{nav}</nav>'
            f'<a class="right" href="{root}compare.html">compare explainers</a></header>'
            f'<main>{body}</main>{js}<script src="{root}static/browser.js?v={ASSET_VERSION}"></script></body></html>')


def index_body(title: str, note: str) -> str:
    return f"""<h1>{esc(title)}</h1><p class="note">{note}</p>
<section id="controls">
 <input id="q" type="search" placeholder="search explanations, or a latent number" size="34">
 <label title="rank by meaning (MiniLM embeddings); needs `autointerp browse`"><input type="checkbox" id="semantic"> semantic</label>
 <select id="partition"><option value="">all partitions</option></select>
 <select id="explainer"><option value="">all explainers</option></select>
 <select id="status"><option value="">any status</option><option value="explained">explained</option>
  <option value="alive">alive</option><option value="not_selected">alive, not selected (cap)</option>
  <option value="too_rare">too rare</option><option value="dead">dead</option></select>
 <select id="flags"><option value="">any flags</option><option value="none">no flag</option>
  <option value="positional">positional</option><option value="single_token">single token</option>
  <option value="unigram">unigram</option></select>
 <span class="range"><select id="scorer"></select> from <input id="smin" type="number" step="0.05" size="5">
  to <input id="smax" type="number" step="0.05" size="5"></span>
 <span id="count"></span>
</section>
<p id="search-note" class="note"></p>
<div class="tablewrap"><table id="latents" class="sortable"><thead></thead><tbody></tbody></table></div>
<p id="more"></p>"""


def _bg(act: float, top: float) -> str:
    a = 0.0 if top <= 0 else min(1.0, act / top)
    return f"background:rgba(255,{int(200 - 120 * a)},0,{0.15 + 0.75 * a:.2f})"


def tokens_html(tokens: list[list], top: float) -> str:
    """One span per token; firing ones coloured by activation, every one with its activation on hover."""
    out = []
    for tok, act in tokens:
        shown = esc(tok.replace("\n", "↵").replace("\t", "⇥"))
        if act > 0:
            out.append(f'<span class="t on" style="{_bg(act, top)}" data-a="{act:.4g}" '
                       f'title="{esc(repr(tok))}: {act:.4g}">{shown}</span>')
        else:
            out.append(f'<span class="t" data-a="0" title="{esc(repr(tok))}: 0">{shown}</span>')
    return "".join(out)


def histogram_svg(hist: list[int], top: float | None, w: int = 320, h: int = 90) -> str:
    if not hist or not top:
        return '<p class="note">no activations</p>'
    peak = max(hist) or 1
    bw = w / len(hist)
    bars = "".join(
        f'<rect x="{i * bw + 1:.1f}" y="{h - 14 - (h - 20) * c / peak:.1f}" width="{bw - 2:.1f}" '
        f'height="{(h - 20) * c / peak:.1f}"><title>{i * top / len(hist):.2f}–{(i + 1) * top / len(hist):.2f}: '
        f'{c:,}</title></rect>' for i, c in enumerate(hist))
    return (f'<svg class="hist" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="activation histogram">{bars}<text x="0" y="{h - 2}">0</text>'
            f'<text x="{w}" y="{h - 2}" text-anchor="end">{top:.2f}</text></svg>')


def _ci(ci) -> str:
    return f"[{number(ci[0])}, {number(ci[1])}]" if ci and ci[0] is not None else ""


def scores_table(scores: list[dict]) -> str:
    if not scores:
        return '<p class="note">not scored</p>'
    rows = []
    for s in scores:
        d = s["difference"]
        rows.append(
            f'<tr data-scorer="{esc(s["scorer"])}"><td>{esc(s["scorer"])}</td><td>{esc(s["metric"])}</td>'
            f'<td class="num score" data-scorer="{esc(s["scorer"])}" data-value="{esc(s["value"])}">'
            f'{number(s["value"]) if s["status"] == "ok" else esc(s["status"])}</td><td class="num">{_ci(s["ci"])}</td>'
            f'<td class="num control" data-value="{esc(s["control"])}">{number(s["control"])}</td>'
            f'<td class="num">{_ci(s["control_ci"])}</td>'
            f'<td class="num {"pos" if d and d > 0 else "neg" if d and d < 0 else ""}">'
            f'{"–" if d is None else f"{d:+.3f}"}</td><td class="num">{number(s["n"])}</td></tr>')
    return ('<table class="scores sortable"><thead><tr><th>scorer</th><th>metric</th><th>value</th><th>95 % CI</th>'
            '<th>control</th><th>control CI</th><th>real − control</th><th>n</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def _example_rows(exs: list[dict], top: float, negative: bool = False) -> str:
    rows = []
    for e in exs:
        extra = ""
        if negative:
            src = e["source"] or "random"
            if e.get("neighbour") is not None:
                src += f' of <a href="{e["neighbour"]}.html">{e["neighbour"]}</a>'
            if e.get("similarity") is not None:
                src += f' ({e["similarity"]:.2f})'
            extra = f'<td class="src">{src}</td>'
        rows.append(f'<tr class="ex" data-split="{esc(e["split"])}">{extra}<td class="num">{number(e["max"], 2)}</td>'
                    f'<td class="split">{esc(e["split"])}</td><td class="text">{tokens_html(e["tokens"], top)}</td></tr>')
    return "".join(rows)


def latent_page(rec: dict, first: int, last: int, pages: set[int], prev_next: tuple[int | None, int | None]) -> str:
    """One latent's page (``pages``: latents of the partition that have a page, for neighbour links)."""
    layer, lat, top = rec["layer"], rec["latent"], rec["max_activation"] or 0.0
    rng = f"{first:05d}-{last:05d}"
    flags = [k.replace("_", " ") for k, v in rec["flags"].items() if v]
    dens = rec["density"]
    top_tok = ""
    if rec.get("top_token") is not None and rec.get("top_token_share") is not None:
        top_tok = (f'<tr><th>top token</th><td><code>{esc(repr(rec["top_token"]))}</code> '
                   f'{rec["top_token_share"] * 100:.0f} % of the activation mass</td></tr>')
    pos_u = f' (position U {rec["position_u"]:.2f})' if rec.get("position_u") is not None else ""
    stats = (f'<table class="kv"><tr><th>status</th><td>{esc(rec["status"])}'
             f'{" (" + esc(rec["selection"]) + ")" if rec.get("selection") else ""}</td></tr>'
             f'<tr><th>fires on</th><td>{rec["n_firing"]:,} tokens'
             f'{" of " + format(rec["n_tokens"], ",") if rec.get("n_tokens") else ""} in {rec["n_windows"]:,} windows'
             f'</td></tr><tr><th>density</th><td>{number(dens * 100 if dens is not None else None)} %</td></tr>'
             f'<tr><th>max · mean</th><td>{number(rec["max_activation"], 2)} · {number(rec["mean_activation"], 2)}'
             f'</td></tr><tr><th>flags</th><td>{esc(", ".join(flags) or "none")}'
             f'{pos_u}</td></tr>'
             f'{top_tok}</table>')
    exps = []
    for e in rec["explanations"]:
        text = (f'<p class="explanation" data-explainer="{esc(e["explainer_fp"])}">{esc(e["text"])}</p>'
                if e["status"] == "ok" else f'<p class="failed">{esc(e["status"])}: {esc(e.get("error") or "")}</p>')
        exps.append(f'<div class="explainer{" active" if e["active"] else ""}"><h3>{esc(e["explainer"])}'
                    f'{" <small>active</small>" if e["active"] else ""} <small>{esc(e.get("model") or "")} · '
                    f'{esc(e["explainer_fp"])}</small></h3>{text}{scores_table(e["scores"])}</div>')
    by_q: dict[int, list[dict]] = {}
    for e in rec["examples"]:
        by_q.setdefault(e["quantile"], []).append(e)
    quant = []
    for q in sorted(by_q):
        exs = sorted(by_q[q], key=lambda e: -(e["max"] or 0))
        lo, hi = min(e["max"] or 0 for e in exs), max(e["max"] or 0 for e in exs)
        quant.append(f'<details open><summary>quantile {q}{" (strongest)" if q == 0 else ""} · {len(exs)} examples · '
                     f'max {lo:.2f}–{hi:.2f}</summary><table class="examples"><tbody>{_example_rows(exs, top)}'
                     f'</tbody></table></details>')
    neg = rec["non_activating"]
    neg_html = (f'<table class="examples"><thead><tr><th>source</th><th>max</th><th>split</th><th>text</th></tr></thead>'
                f'<tbody>{_example_rows(neg, top, negative=True)}</tbody></table>' if neg else
                '<p class="note">none stored</p>')
    nbs = []
    for n in rec["neighbours"]:
        label = f'{n["latent"]} <small>{n["similarity"]:.2f}</small>'
        nbs.append(f'<a href="{n["latent"]}.html">{label}</a>' if n["latent"] in pages else f"<span>{label}</span>")
    kind = rec["neighbours"][0]["kind"] if rec["neighbours"] else ""
    prev, nxt = prev_next
    links = ([f'<a href="{prev}.html">← latent {prev}</a>'] if prev is not None else []) + \
        ([f'<a href="{nxt}.html">latent {nxt} →</a>'] if nxt is not None else [])
    pn = f'<p class="prevnext">{" ".join(links)}</p>'
    body = (f'{pn}<h1>{esc(layer)} · latent {lat}</h1><div class="cols"><section>{stats}</section>'
            f'<section><h2>activation histogram</h2>{histogram_svg(rec["histogram"], rec["max_activation"])}</section>'
            f'</div><h2>explanations</h2>{"".join(exps) or "<p class=note>none: this latent was not explained</p>"}'
            f'<h2>activating examples by quantile <small>hover a token for its activation</small></h2>'
            f'{"".join(quant) or "<p class=note>no examples (not selected)</p>"}'
            f'<h2>non-activating examples</h2>{neg_html}'
            f'<h2>neighbours <small>{esc(kind)}</small></h2><p class="neighbours">{" ".join(nbs) or "none"}</p>'
            f'<script type="application/json" id="latent-data">{_json_script(rec)}</script>')
    return shell(f"{layer} latent {lat}", body, "../../../", [],
                 [("all partitions", "../../../index.html"), (f"{layer} {rng}", "../index.html"), (f"latent {lat}", None)])


def _json_script(obj) -> str:
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")


def compare_body(pairs: list[dict], link_prefix: str) -> str:
    """Explainer pairs on the same latents: per scorer the medians and the median paired difference, then
    every shared latent with both explanations and scores."""
    if not pairs:
        return ('<h1>compare explainers</h1><p class="note">Only one explainer has explained these latents. '
                'Add another to the registry (<code>data/explainers.yaml</code>) and make it active: the '
                '<code>explainer_change</code> sensor re-explains every partition, and this page compares them.</p>')
    parts = ["<h1>compare explainers</h1><p class=note>Two explainers on the <b>same</b> latents: paired "
             "differences b − a of each scorer's per-latent value (medians, never pooled).</p>"]
    for p in pairs:
        summary = []
        for sc, vals in p["by_scorer"].items():
            diffs = [b - a for a, b in vals]
            summary.append(f'<tr><td>{esc(sc)}</td><td class="num">{len(vals)}</td>'
                           f'<td class="num">{statistics.median([a for a, _ in vals]):.3f}</td>'
                           f'<td class="num">{statistics.median([b for _, b in vals]):.3f}</td>'
                           f'<td class="num">{statistics.median(diffs):+.3f}</td>'
                           f'<td class="num">{sum(d > 0 for d in diffs)}</td><td class="num">{sum(d < 0 for d in diffs)}</td></tr>')
        scorers = list(p["by_scorer"])
        rows = []
        for r in p["latents"]:
            cells = "".join(f'<td class="num">{number(r["a"].get(s))}</td><td class="num">{number(r["b"].get(s))}</td>'
                            f'<td class="num">{_signed(r["a"].get(s), r["b"].get(s))}</td>' for s in scorers)
            link = f'{link_prefix}{r["layer"]}/{r["range"]}/latents/{r["latent"]}.html'
            rows.append(f'<tr><td>{esc(r["layer"])}</td><td class="num"><a href="{esc(link)}">{r["latent"]}</a></td>'
                        f'<td class="text">{esc(r["text_a"])}</td><td class="text">{esc(r["text_b"])}</td>{cells}</tr>')
        head = "".join(f"<th>{esc(s)} a</th><th>{esc(s)} b</th><th>b − a</th>" for s in scorers)
        parts.append(
            f'<h2>a = {esc(p["a_name"])} <small>{esc(p["a"])}</small> · b = {esc(p["b_name"])} <small>{esc(p["b"])}'
            f'</small></h2><table class="sortable"><thead><tr><th>scorer</th><th>latents</th><th>median a</th>'
            f'<th>median b</th><th>median b − a</th><th>b better</th><th>a better</th></tr></thead><tbody>'
            f'{"".join(summary)}</tbody></table><div class="tablewrap"><table class="sortable pairs"><thead><tr>'
            f'<th>layer</th><th>latent</th><th>explanation a</th><th>explanation b</th>{head}</tr></thead><tbody>'
            f'{"".join(rows)}</tbody></table></div>')
    return "".join(parts)


def _signed(a, b) -> str:
    return "–" if a is None or b is None else f"{b - a:+.3f}"
