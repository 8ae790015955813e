"""Live: `dagster dev` (own process group) with the explainer_change sensor on. Editing the registry makes the
new explainer's explanations, scores and browser pages appear for every partition; then headless Chromium opens
the asset graph and a scores partition page and finds our score-histogram plot, and follows a latent_pages
partition's `open_in_browser` link to the pages `autointerp browse` serves (screenshots in artifacts/)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from autointerp_assets.core.config import load_config
from autointerp_assets.core.identity import explainer_fp
from autointerp_assets.core.registry import active_config
from autointerp_assets.core.storage import Warehouse
from autointerp_assets_tests.support.automation_base import KEYS, base_project, project_copy, write_registry
from autointerp_assets_tests.support.dagster_dev import dagster_dev, free_port, stop_group

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SENSOR = """{ sensorOrError(sensorSelector: {repositoryName: "__repository__",
  repositoryLocationName: "autointerp_assets", sensorName: "explainer_change"}) {
  __typename ... on Sensor { sensorState { status ticks(limit: 20) { status cursor skipReason runIds error { message } } } }
  ... on PythonError { message } } }"""
RUNS = """query($fp: String!) { runsOrError(filter: {tags: [{key: "autointerp/explainer_fp", value: $fp}]}) {
  ... on Runs { results { runId status tags { key value } } } } }"""


def gql(port: int, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                 data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["data"]


def wait_for(what: str, fn, timeout: float, log: Path, every: float = 2.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            out = fn()
        except OSError:
            out = None
        if out:
            return out
        time.sleep(every)
    tail = log.read_text()[-4000:] if log.exists() else ""
    raise AssertionError(f"{what} not within {timeout:.0f}s; dagster dev log tail:\n{tail}")


@pytest.fixture(scope="module")
def server():
    base, home = base_project()
    config = project_copy("live")  # no registry yet: the project config's explainer is active
    cfg = yaml.safe_load(config.read_text())
    cfg["browser"] = {"port": free_port()}  # where `autointerp browse` serves this project's pages
    config.write_text(yaml.safe_dump(cfg))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nconcurrency:\n  runs:\n"
                                       "    max_concurrent_runs: 2\n")
    log = config.parent / "dagster_dev.log"
    env = {"DAGSTER_HOME": str(home), "AUTOINTERP_CONFIG": str(config),
           "AUTOINTERP_BACKFILL_CRON": "0 0 1 1 *"}  # no scheduled backfill during the test
    with dagster_dev(env, log) as port:
        yield {"port": port, "config": config, "log": log}


def sensor_ticks(port: int) -> list[dict]:
    s = gql(port, SENSOR)["sensorOrError"]
    assert s["__typename"] == "Sensor", s
    assert s["sensorState"]["status"] == "RUNNING"  # on by default
    return s["sensorState"]["ticks"]


def test_registry_edit_reexplains_every_partition_live(server):
    port, config, log = server["port"], server["config"], server["log"]
    old_fp = explainer_fp(active_config(config))
    # the sensor's first tick takes the current explainer as its cursor and requests nothing
    ticks = wait_for("first sensor tick", lambda: [t for t in sensor_ticks(port) if t["cursor"]], 180, log)
    assert ticks[-1]["cursor"] == old_fp and not ticks[-1]["runIds"]

    write_registry(config, {"active_explainer": "brief", "explainers": {"brief": {"max_tokens": 20}}})
    new_fp = explainer_fp(active_config(config))
    assert new_fp != old_fp

    def runs_done():  # one run per partition, and one of the calibration (the new explainer on planted latents)
        runs = gql(port, RUNS, {"fp": new_fp})["runsOrError"]["results"]
        failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        assert not failed, f"sensor runs failed: {failed}\n{log.read_text()[-4000:]}"
        return runs if len(runs) == len(KEYS) + 1 and all(r["status"] == "SUCCESS" for r in runs) else None

    runs = wait_for("the sensor's runs to succeed", runs_done, 600, log, every=3)
    partitions = sorted(t["value"] for r in runs for t in r["tags"] if t["key"] == "dagster/partition")
    assert partitions == KEYS
    cfg = load_config(config)
    assert Warehouse(cfg.resolve(cfg.database)).scalar(
        "SELECT count(*) FROM calibration_scores WHERE explainer_fp = ?", [new_fp]) > 0
    assert all({"key": "autointerp/explainer", "value": "brief"} in r["tags"] for r in runs)
    assert any(new_fp == t["cursor"] and len(t["runIds"]) == len(KEYS) + 1 for t in sensor_ticks(port))

    wh = Warehouse(cfg.resolve(cfg.database))
    for layer in ("layers.1", "layers.3"):
        selected = wh.scalar("SELECT count(*) FROM latent_selection WHERE status = 'selected' AND layer = ?", [layer])
        assert wh.scalar("SELECT count(*) FROM explanations WHERE explainer_fp = ? AND layer = ?",
                         [new_fp, layer]) == selected > 0
        assert wh.scalar("SELECT count(*) FROM scores WHERE explainer_fp = ? AND layer = ?", [new_fp, layer]) > 0
        assert wh.scalar("SELECT count(*) FROM explanations WHERE explainer_fp = ? AND layer = ?",
                         [old_fp, layer]) == selected  # the old explainer's rows stay


def test_browser_finds_the_score_plot(server):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian chromium is missing: apt-get install -y chromium (make test does it)"
    port = server["port"]
    ARTIFACTS.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/asset-groups", wait_until="networkidle")  # the global asset lineage
            _dismiss_modal(page)
            page.get_by_text("Global asset lineage").wait_for(timeout=60_000)
            for group in ("corpus", "sparse_coders", "activations", "examples", "explanations", "scores"):
                page.get_by_text(group, exact=True).first.wait_for(timeout=30_000)  # one node per stage group
            page.screenshot(path=str(ARTIFACTS / "asset_graph.png"))

            page.goto(f"{base}/assets/scores?view=partitions&partition={KEYS[0]}", wait_until="networkidle")
            _dismiss_modal(page)
            row = page.locator("tr", has=page.get_by_text("score_histogram_plot", exact=True)).first
            row.wait_for(timeout=60_000)
            row.get_by_text("[Show Markdown]").click()
            plot = page.locator('img[src^="data:image/png"]').first
            plot.wait_for(timeout=30_000)
            # decoded by the browser, at our plot's size
            assert plot.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]") == [True, 520, 260]
            page.screenshot(path=str(ARTIFACTS / "scores_partition_plot.png"))
        finally:
            browser.close()
    assert (ARTIFACTS / "scores_partition_plot.png").stat().st_size > 10_000


def test_dagster_ui_link_opens_the_latent_browser(server):
    """The latent_pages partition page links to its index; with `autointerp browse` running, the link opens it,
    and after the registry edit (first test) two explainers are there to compare."""
    import subprocess
    import sys

    from playwright.sync_api import sync_playwright

    port, config = server["port"], server["config"]
    cfg = load_config(config)
    log = config.parent / "browse.log"
    with open(log, "w") as out:
        browse = subprocess.Popen([sys.executable, "-m", "autointerp_assets.cli", "--config", str(config), "browse",
                                   "--no-search"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("autointerp browse", lambda: urllib.request.urlopen(f"{cfg.browser_url}/index.html", timeout=5)
                 .status == 200, 60, log, every=0.5)
        layer, rng = KEYS[0].split("|")[1], KEYS[0].split("|")[0]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/assets/latent_pages?view=partitions&partition={KEYS[0]}",
                          wait_until="networkidle")
                _dismiss_modal(page)
                row = page.locator("tr", has=page.get_by_text("open_in_browser", exact=True)).first
                row.wait_for(timeout=60_000)
                link = row.locator("a").first
                href = link.get_attribute("href")
                assert href == f"{cfg.browser_url}/{layer}/{rng}/index.html", \
                    f"{href}: not this project's pages (did the registry-edit test's runs make them?)"
                page.screenshot(path=str(ARTIFACTS / "dagster_latent_pages.png"))
                with page.context.expect_page() as opened:
                    link.click(modifiers=["Control"])
                site = opened.value
                site.wait_for_function("() => window.__autointerpComplete !== undefined", timeout=60_000)
                assert site.url == href
                assert site.locator("h1").inner_text() == f"{layer} · latents {rng}"
                n_rows = site.locator("#latents tbody tr").count()
                assert n_rows >= 32  # every latent of the range, one row per explainer
                # both explainers (the project's and the registry's 'brief') explained these latents
                names = site.locator("#explainer option").all_inner_texts()
                assert any(n.startswith("brief ") for n in names) and any(n.startswith("project ") for n in names)
                site.screenshot(path=str(ARTIFACTS / "dagster_opened_latent_pages.png"))
                site.goto(f"{cfg.browser_url}/compare.html")
                assert "b = brief" in site.content() or "a = brief" in site.content()
                site.screenshot(path=str(ARTIFACTS / "dagster_compare_explainers.png"), full_page=True)
            finally:
                browser.close()
    finally:
        stop_group(browse)


def _dismiss_modal(page) -> None:
    """The first visit shows a 'Join the Dagster community' dialog over the page."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=3000)
        skip.click()
    except Exception:  # no dialog this time
        pass
