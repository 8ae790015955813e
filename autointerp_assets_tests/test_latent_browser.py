"""Looking at latents on the tiny pipeline (2 partitions, materialized once for the session by automation_base):
token strings in SQL, the terminal card, `autointerp search`, and the latent browser's pages opened in headless
Chromium (Debian's) from `autointerp browse`: the index sorts by score, filters narrow it, a latent page shows
highlighted tokens with their activations, and its explanation and scores are the warehouse's. Screenshots go
to artifacts/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.identity import explainer_fp
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.storage import Warehouse
from autointerp_assets.core.vocabulary import token_strings
from autointerp_assets_tests.support.automation_base import KEYS, base_project
from autointerp_assets_tests.support.dagster_dev import free_port, stop_group

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
LAYER = "layers.1"


@pytest.fixture(scope="module")
def project():
    config, _ = base_project()
    cfg = load_config(config)
    return config, cfg, Warehouse(cfg.resolve(cfg.database))


def cli(config: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "autointerp_assets.cli", "--config", str(config), *args],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def explained_latent(wh: Warehouse) -> tuple[int, str, float]:
    """The layers.1 latent with the active explainer's best detection score: (latent, explanation, detection
    balanced accuracy). (The baseline explainers' rows sit beside; the card lists the active explainer first.)"""
    efp = explainer_fp(load_config(base_project()[0]))
    return wh.query("SELECT e.latent, e.explanation, s.value FROM explanations e JOIN scores s USING "
                    "(layer, latent, explainer_fp) WHERE e.layer = ? AND e.status = 'ok' AND s.scorer = 'detection' "
                    "AND s.status = 'ok' AND e.explainer_fp = ? ORDER BY s.value DESC, e.latent LIMIT 1",
                    [LAYER, efp]).row(0)


def test_example_text_view_reads_tokens_as_text(project):
    config, cfg, wh = project
    rows = wh.query("SELECT e.token_ids, e.acts, t.text, t.tokens FROM examples e JOIN example_text t "
                    "USING (layer, latent, split, example_id) WHERE e.layer = ? ORDER BY e.latent, e.split, "
                    "e.example_id LIMIT 60", [LAYER])
    assert rows.height == 60
    vocab = token_strings(Context.of(cfg).model_dir())
    spans = 0
    for ids, acts, text, toks in rows.iter_rows():
        assert [t["token"] for t in toks] == [vocab[i] for i in ids]
        assert [t["activation"] for t in toks] == pytest.approx(list(acts))
        # one << >> around each run of firing tokens
        marked, firing = "", 0
        for i, (t, a) in enumerate(zip(ids, acts)):
            opens = a > 0 and (i == 0 or acts[i - 1] <= 0)
            closes = a > 0 and (i == len(acts) - 1 or acts[i + 1] <= 0)
            marked += ("<<" if opens else "") + vocab[t] + (">>" if closes else "")
            firing += opens
        assert text == marked
        spans += firing
    assert spans > 0
    assert wh.scalar("SELECT count(*) FROM vocabulary") == len(vocab)


def test_latent_card_shows_the_warehouse_rows(project):
    config, cfg, wh = project
    lat, text, det = explained_latent(wh)
    out = cli(config, "latent", LAYER, str(lat), "--color", "never")
    lines = out.splitlines()
    assert max(len(x) for x in lines) <= 100
    assert lines[0].startswith(f"{LAYER} · latent {lat} · partition 00000-00031")
    flat = " ".join(x.strip() for x in lines)
    assert f'"{text}"' in flat or text[:60] in flat
    det_line = next(x for x in lines if x.strip().startswith("detection "))
    assert f"{det:.3f}" in det_line
    assert "<<" in out and "top examples by quantile" in out and "non-activating examples" in out
    assert "activation histogram" in out and "neighbours by decoder cosine" in out
    coloured = cli(config, "latent", LAYER, str(lat), "--color", "always")
    assert "\x1b[48;5;" in coloured
    bad = subprocess.run([sys.executable, "-m", "autointerp_assets.cli", "--config", str(config), "latent",
                          "layers.99", "1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown layer 'layers.99'" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_search_ranks_a_latent_by_its_own_explanation(project):
    config, cfg, wh = project
    lat, text, _ = explained_latent(wh)
    res = json.loads(cli(config, "search", text, "-k", "3", "--layer", LAYER, "--format", "json"))
    assert len(res) == 3 and res[0]["similarity"] > 0.99
    assert (res[0]["layer"], res[0]["latent"]) == (LAYER, lat) or res[0]["explanation"] == text
    table = cli(config, "search", "closing brackets", "-k", "5")
    assert max(len(x) for x in table.splitlines()) <= 100 and "(5 rows)" in table
    # the stored embeddings are the ones the pages asset wrote (one per ok explanation)
    assert wh.scalar("SELECT count(*) FROM explanation_embeddings") == \
        wh.scalar("SELECT count(*) FROM explanations WHERE status = 'ok'")


def test_sql_and_summary_formats_fit_100_columns(project):
    config, cfg, wh = project
    table = cli(config, "summary")
    assert max(len(x) for x in table.splitlines()) <= 100 and "(2 rows)" in table
    rows = json.loads(cli(config, "sql", "select layer, latent, explanation from explanations order by all limit 3",
                          "--format", "json"))
    assert len(rows) == 3 and set(rows[0]) == {"layer", "latent", "explanation"}
    csv = cli(config, "sql", "select layer, count(*) as n from latent_stats group by all order by all", "--format",
              "csv")
    assert csv.splitlines() == ["layer,n", "layers.1,32", "layers.3,32"]
    md = cli(config, "sql", "select * from explainer_leaderboard", "--format", "markdown")
    assert md.startswith("| explainer_fp | model | scorer |") and "| median_control |" in md
    scorers = [line.split(" | ")[2] for line in md.splitlines()[2:]]
    assert scorers and not any(s.endswith("_control") for s in scorers)  # controls: a column, not scorers
    wide = cli(config, "sql", "select * from scores limit 4")
    assert max(len(x) for x in wide.splitlines()) <= 100


@pytest.fixture(scope="module")
def browse(project):
    """`autointerp browse` in its own process (it never opens the warehouse), on a free port."""
    config, cfg, wh = project
    port = free_port()
    log = cfg.browser_dir.parent / "browse.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "autointerp_assets.cli", "--config", str(config), "browse",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/index.html", timeout=5).read()
            break
        except OSError:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
    try:
        yield base
    finally:
        stop_group(proc)


def test_browse_never_blocks_the_writer(project, browse):
    config, cfg, wh = project
    urllib.request.urlopen(f"{browse}/{KEYS[0].split('|')[1]}/00000-00031/index.html", timeout=10).read()
    t0 = time.perf_counter()
    with wh.write() as con:  # another process serves the pages: DuckDB's one-writer lock is free
        con.execute("CREATE OR REPLACE TEMP TABLE _probe AS SELECT 1")
    assert time.perf_counter() - t0 < 30
    res = json.loads(urllib.request.urlopen(f"{browse}/api/search?q=numbers&k=2", timeout=120).read())
    assert len(res["results"]) == 2 and res["model"]


def _complete(page) -> None:
    page.wait_for_function("() => window.__autointerpComplete !== undefined", timeout=30_000)


def _column(page, name: str) -> list[str]:
    idx = page.evaluate("(n) => [...document.querySelectorAll('#latents thead th')].findIndex(t => "
                        "t.dataset.name === n)", name)
    assert idx >= 0, f"no column {name}"
    return page.evaluate("(i) => [...document.querySelectorAll('#latents tbody tr')].map(r => "
                         "r.cells[i].querySelector('.v') ? r.cells[i].querySelector('.v').textContent : "
                         "r.cells[i].textContent)", idx)


def test_pages_in_chromium_match_the_warehouse(project, browse):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian chromium is missing: apt-get install -y chromium (make test does it)"
    config, cfg, wh = project
    ARTIFACTS.mkdir(exist_ok=True)
    n_rows = wh.scalar("SELECT sum(greatest(n, 1)) FROM (SELECT s.latent, count(e.latent) AS n FROM latent_stats s "
                       "LEFT JOIN explanations e USING (layer, latent) WHERE s.layer = ? GROUP BY s.latent)", [LAYER])
    n_explained = wh.scalar("SELECT count(*) FROM explanations WHERE layer = ?", [LAYER])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{browse}/{LAYER}/00000-00031/index.html")
            _complete(page)
            assert page.locator("#latents tbody tr").count() == n_rows
            # the default order is the first scorer (detection), best first, unscored rows last
            det = [float(v) for v in _column(page, "detection") if v.strip()]
            assert len(det) > 0 and det == sorted(det, reverse=True)
            page.screenshot(path=str(ARTIFACTS / "browser_index.png"))
            page.locator("#latents thead th[data-name='density']").click()  # sort by density, highest first
            _complete(page)
            dens = [float(v.split()[0]) for v in _column(page, "density")]
            assert dens == sorted(dens, reverse=True)
            page.locator("#latents thead th[data-name='detection']").click()
            _complete(page)
            det = [float(v) for v in _column(page, "detection") if v.strip()]
            assert det == sorted(det, reverse=True)
            # filters narrow the table: explained latents only, then a score range, then text
            page.select_option("#status", "explained")
            _complete(page)
            assert page.locator("#latents tbody tr").count() == n_explained < n_rows
            page.select_option("#scorer", "detection")
            page.fill("#smin", "0.5")
            page.locator("#smin").dispatch_event("change")
            _complete(page)
            kept = [float(v) for v in _column(page, "detection")]
            assert kept and min(kept) >= 0.5 and len(kept) <= n_explained
            assert len(kept) == wh.scalar("SELECT count(*) FROM scores WHERE layer = ? AND scorer = 'detection' "
                                          "AND status = 'ok' AND value >= 0.5", [LAYER])
            page.screenshot(path=str(ARTIFACTS / "browser_index_filtered.png"))

            lat, text, det_value = explained_latent(wh)
            page.fill("#smin", "")
            page.fill("#q", text[:40])
            page.wait_for_timeout(400)
            _complete(page)
            assert 1 <= page.locator("#latents tbody tr").count() < n_explained
            page.locator(f"#latents tbody a[href$='latents/{lat}.html']").first.click()
            page.wait_for_load_state()
            assert page.locator("h1").inner_text() == f"{LAYER} · latent {lat}"
            assert page.locator("p.explanation").first.inner_text() == text
            shown = float(page.locator("td.score[data-scorer='detection']").first.get_attribute("data-value"))
            assert shown == pytest.approx(det_value)
            efp = explainer_fp(load_config(base_project()[0]))  # the active explainer (its block on the page)
            for scorer, value in wh.query("SELECT scorer, value FROM scores WHERE layer = ? AND latent = ? AND "
                                          "NOT control AND status = 'ok' AND explainer_fp = ?",
                                          [LAYER, lat, efp]).iter_rows():
                cell = page.locator(f"div.explainer.active td.score[data-scorer='{scorer}']")
                assert float(cell.get_attribute("data-value")) == pytest.approx(value), scorer
            # highlighted tokens carry the warehouse's activations
            want = sorted(float(f"{a:.4g}") for (toks,) in wh.query(
                "SELECT tokens FROM example_text WHERE layer = ? AND latent = ? AND split IN ('train', 'test')",
                [LAYER, lat]).iter_rows() for t in toks for a in [t["activation"]] if a > 0)
            got = sorted(float(a) for a in page.locator(".t.on").evaluate_all("els => els.map(e => e.dataset.a)"))
            assert got == want and len(got) > 0
            tok = page.locator(".t.on").first
            tok.scroll_into_view_if_needed()
            tok.hover()
            after = tok.evaluate("e => getComputedStyle(e, '::after').content")
            assert after.strip('"') == tok.get_attribute("data-a")  # the tooltip shows the activation
            page.screenshot(path=str(ARTIFACTS / "browser_latent.png"), full_page=True)

            # semantic search in the page (served: the query is embedded by `autointerp browse`)
            page.goto(f"{browse}/index.html")
            _complete(page)
            page.check("#semantic")
            page.fill("#q", text)
            page.wait_for_function("() => document.querySelector('#search-note').textContent.includes('nearest')",
                                   timeout=120_000)
            _complete(page)
            page.locator("#latents thead th[data-name='similarity']").wait_for(timeout=10_000)
            sims = [float(v) for v in _column(page, "similarity")]
            assert sims == sorted(sims, reverse=True) and sims[0] > 0.99  # ranked by meaning, best first
            first = page.locator("#latents tbody tr").first
            assert first.locator("td").nth(1).inner_text() == str(lat) or text in first.inner_text()
            page.screenshot(path=str(ARTIFACTS / "browser_search.png"))
            page.goto(f"{browse}/compare.html")
            page.screenshot(path=str(ARTIFACTS / "browser_compare.png"))
        finally:
            browser.close()
    for name in ("browser_index.png", "browser_latent.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000


def test_pages_open_as_files_without_a_server(project):
    """The same site opened straight from disk (file://): self-contained, text search instead of semantic."""
    from playwright.sync_api import sync_playwright

    config, cfg, wh = project
    html = (cfg.browser_dir / "index.html").read_text()
    assert not re.search(r"""(src|href)=["']https?://""", html)  # no CDN, nothing external
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((cfg.browser_dir / "index.html").as_uri())
            _complete(page)
            assert page.locator("#latents tbody tr").count() == wh.scalar(
                "SELECT sum(greatest(n, 1)) FROM (SELECT s.layer, s.latent, count(e.latent) AS n FROM latent_stats s "
                "LEFT JOIN explanations e USING (layer, latent) GROUP BY ALL)")
            page.check("#semantic")
            page.fill("#q", "x")
            page.wait_for_timeout(400)
            assert "needs the pages served" in page.locator("#search-note").inner_text()
            assert not errors
        finally:
            browser.close()
