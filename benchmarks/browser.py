"""Latent browser benchmark: a 4,608-latent partition's index opened in headless Chromium (Debian's).

Builds synthetic dashboard records for one partition of 4,608 latents (every latent explained and scored by
detection, fuzzing and embedding with controls, 20 examples of 32 tokens each; seeded), writes the partition's
pages with the same code as the latent_pages asset (timed), then opens its index from disk in Chromium:

- **open**: navigation start -> all 4,608 rows sorted by score and counted, the first 500 laid out
  (``__autointerpReady``) and painted (``__autointerpComplete``; the rest are appended as one scrolls);
- **sort** / **filter**: a header click / a flag filter until the new order is painted;
- **show all**: the remaining rows put into the DOM and laid out;

against baselines from the same run and browser: a blank page with the same stylesheet, and the same 4,608
rows pre-rendered as a static HTML table (no script). Prints medians of ``--repeat`` fresh pages and ratios.

    .venv/bin/python benchmarks/browser.py [--latents 4608] [--repeat 5]
"""

from __future__ import annotations

import argparse
import html
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autointerp_assets.core.browser import pages, site  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
WORDS = ("the token of numbers closing brackets python keyword after before words plural verbs quote string "
         "names function call argument list import module file path line comment operator").split()


def records(n: int, seed: int = 0, n_examples: int = 20) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for lat in range(n):
        top = rng.uniform(1, 30)
        scores = []
        for scorer, metric in (("detection", "balanced_accuracy"), ("fuzzing", "balanced_accuracy"),
                               ("embedding", "auroc")):
            v, c = rng.random(), rng.uniform(0.4, 0.6)
            scores.append({"scorer": scorer, "metric": metric, "value": v, "status": "ok", "ci": [v - .1, v + .1],
                           "control": c, "control_ci": [c - .1, c + .1], "difference": v - c, "n": 40,
                           "n_failed": 0})
        exs = []
        for j in range(n_examples):
            toks = [[" " + rng.choice(WORDS), 0.0] for _ in range(32)]
            for k in rng.sample(range(32), 3):
                toks[k][1] = round(rng.uniform(0.1, top), 3)
            exs.append({"split": "train" if j % 2 else "test", "example_id": j, "quantile": j % 5,
                        "max": max(t[1] for t in toks), "text": "", "tokens": toks, "source": None,
                        "neighbour": None, "similarity": None})
        out.append({
            "layer": "layers.6", "latent": lat, "status": "alive", "selection": "selected", "n_firing": rng.randint(20, 5000),
            "n_windows": 100, "n_tokens": 131072, "density": rng.random() / 50, "max_activation": top,
            "mean_activation": top / 3, "histogram": [rng.randint(0, 500) for _ in range(16)],
            "flags": {"positional": rng.random() < .02, "single_token": rng.random() < .2, "unigram": rng.random() < .3},
            "position_u": rng.random() / 10, "top_token": " the", "top_token_share": rng.random(), "tokens_for_mass": 4,
            "explanations": [{"explainer_fp": "explainer-000000000000", "explainer": "project", "active": True,
                              "model": "bench", "status": "ok", "error": None, "scores": scores,
                              "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16)))}],
            "examples": exs, "non_activating": [], "neighbours": []})
    return out


def static_table(recs: list[dict], path: Path) -> None:
    """Baseline: the same rows as plain pre-rendered HTML (no script)."""
    rows = "".join(f"<tr><td>{r['latent']}</td><td>{r['status']}</td><td>{r['density'] * 100:.3f} %</td>"
                   f"<td>{r['max_activation']:.2f}</td><td>{html.escape(r['explanations'][0]['text'])}</td>"
                   + "".join(f"<td>{s['value']:.3f}</td>" for s in r["explanations"][0]["scores"]) + "</tr>"
                   for r in recs)
    path.write_text(f'<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" '
                    f'href="static/browser.css"></head><body><table id="latents"><tbody>{rows}</tbody></table>'
                    f'<script>void document.body.offsetHeight; window.__autointerpReady = performance.now(); '
                    f'requestAnimationFrame(() => requestAnimationFrame(() => {{ window.__autointerpComplete = '
                    f'performance.now(); }}));</script>'
                    f'</body></html>')


def open_ms(browser, url: str, complete: bool = True) -> tuple[float, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(url, wait_until="commit")
        if not complete:  # the load event of the page itself, from the browser's navigation timing
            page.wait_for_function("() => performance.getEntriesByType('navigation')[0]?.loadEventEnd > 0",
                                   timeout=60_000)
            t = page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
            return t, t
        page.wait_for_function("() => window.__autointerpComplete !== undefined", timeout=60_000)
        return page.evaluate("() => window.__autointerpReady"), page.evaluate("() => window.__autointerpComplete")
    finally:
        page.close()


# inside the page: act, then wait until every row of the new order is in the DOM (ms, no driver round trips)
_TIMED = """async (act) => {
  const t0 = performance.now();
  if (act === 'all') { document.querySelector('#show-all').click(); void document.body.offsetHeight;
                       return performance.now() - t0; }
  if (act === 'sort') document.querySelector("#latents thead th[data-name='density']").click();
  else { const s = document.querySelector('#flags'); s.value = 'single_token'; s.dispatchEvent(new Event('change')); }
  await new Promise((done) => { const f = () => window.__autointerpComplete !== undefined ? done() :
                                  requestAnimationFrame(f); f(); });
  return window.__autointerpComplete - t0;
}"""


def interaction_ms(browser, url: str) -> tuple[float, float, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(url)
        page.wait_for_function("() => window.__autointerpComplete !== undefined", timeout=60_000)
        sort, show_all = page.evaluate(_TIMED, "sort"), page.evaluate(_TIMED, "all")
        return sort, page.evaluate(_TIMED, "filter"), show_all
    finally:
        page.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latents", type=int, default=4608)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="browser-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        recs = records(args.latents)
        t_make = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = site.write_partition(root, recs, "layers.6", 0, args.latents - 1)
        site.write_site(root)
        t_write = time.perf_counter() - t0
        part = site.partition_dir(root, "layers.6", 0, args.latents - 1)
        size = (part / "rows.js").stat().st_size
        print(f"{args.latents:,} latents: records {t_make:.1f} s; pages written in {t_write:.1f} s "
              f"({out['pages']:,} latent pages + index; rows.js {size / 1e6:.2f} MB)", flush=True)
        static_table(recs, root / "static_table.html")
        blank = pages.shell("blank", "", "", [])
        (root / "blank.html").write_text(blank.replace(f'<script src="static/browser.js?v={pages.ASSET_VERSION}">'
                                                       '</script>', ""))
        res: dict[str, list] = {"blank": [], "static": [], "ready": [], "complete": [], "sort": [], "filter": [],
                                "all": []}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                open_ms(browser, (part / "index.html").as_uri())  # warm the browser's own start-up
                for _ in range(args.repeat):  # interleaved, so drift hits every side alike
                    res["blank"].append(open_ms(browser, (root / "blank.html").as_uri(), complete=False)[1])
                    res["static"].append(open_ms(browser, (root / "static_table.html").as_uri())[1])
                    ready, done = open_ms(browser, (part / "index.html").as_uri())
                    res["ready"].append(ready)
                    res["complete"].append(done)
                    s, f, a = interaction_ms(browser, (part / "index.html").as_uri())
                    res["sort"].append(s)
                    res["filter"].append(f)
                    res["all"].append(a)
            finally:
                browser.close()
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"medians of {args.repeat} fresh pages (ms since navigation start):")
    print(f"  blank page (same stylesheet)                 {med['blank']:8.0f}")
    print(f"  static pre-rendered table, {args.latents} rows     {med['static']:8.0f}")
    print(f"  index laid out: {args.latents} rows sorted by score, counted, first 500 in the DOM "
          f"{med['ready']:6.0f}")
    print(f"  index open and painted                        {med['complete']:8.0f}   "
          f"{med['complete'] / med['static']:.2f}x the static table   goal < 2000 ms: "
          f"{'met' if med['complete'] < 2000 else 'NOT met'}")
    print(f"  re-sort by density                            {med['sort']:8.0f}")
    print(f"  filter (single-token flag)                    {med['filter']:8.0f}")
    print(f"  'show all': the other rows into the DOM        {med['all']:8.0f}")
    print("all runs:", {k: [round(x) for x in v] for k, v in res.items()})


if __name__ == "__main__":
    main()
