"""Live: the scheduled backfill in `dagster dev` (own process group; its daemons run the automation sensor).

The automation test project (latents 0-31 on layers.1 and layers.3, materialized) is extended by the range
32-63, so the code location has two partitions that were never materialized. With the cron set to every
minute, the next tick makes the `scheduled_backfill` sensor launch a real backfill over exactly those
partitions (Dagster emits a backfill only when a tick requests more than one partition of an asset; one
partition would be a plain run). The test reads it through GraphQL (`partitionBackfillsOrError`), waits for
it to succeed, finds the new partitions' rows in DuckDB (the old ones' rows untouched), and opens the UI's
Backfills page in headless Chromium (screenshot in artifacts/backfills.png).

Wall time is bounded by the cron's minute: the condition fires on the first evaluation after a minute
boundary that follows an earlier evaluation, so the backfill starts 0-65 s after the server is up.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from autointerp_assets.core.config import load_config
from autointerp_assets.core.storage import Warehouse
from autointerp_assets.defs.assets import PARTITIONED_ASSETS
from autointerp_assets_tests.support.automation_base import base_project, project_copy
from autointerp_assets_tests.support.dagster_dev import ROOT, dagster_dev
from autointerp_assets_tests.test_live_ui import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, _dismiss_modal, gql, wait_for

pytestmark = pytest.mark.slow

LAYERS = ("layers.1", "layers.3")
NEW = [f"00032-00063|{layer}" for layer in LAYERS]
BACKFILLS = """{ partitionBackfillsOrError(limit: 10) { __typename
  ... on PartitionBackfills { results { id status isAssetBackfill partitionNames numPartitions title
        assetSelection { path } tags { key value } runs { runId status tags { key value } } } }
  ... on PythonError { message } } }"""
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def backfills(port: int) -> list[dict]:
    out = gql(port, BACKFILLS)["partitionBackfillsOrError"]
    assert out["__typename"] == "PartitionBackfills", out
    return out["results"]


def partition_rows(wh: Warehouse, layer: str, first: int, last: int) -> dict[str, int]:
    return {t: wh.scalar(f"SELECT count(*) FROM {t} WHERE layer = ? AND latent BETWEEN ? AND ?", [layer, first, last])
            for t in ("latent_stats", "latent_selection", "examples", "explanations", "scores")}


@pytest.fixture(scope="module")
def extended():
    """A copy of the automation project (database and Dagster home) whose config adds the latent range 32-63."""
    _, home = base_project()
    config = project_copy("backfill")
    cfg = yaml.safe_load(config.read_text())
    cfg["latents"] = {**cfg["latents"], "stop": 64}
    config.write_text(yaml.safe_dump(cfg))
    copy = config.parent / "dagster_home"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(home, copy)  # Dagster's record of the materialized partitions comes along
    # the project's instance settings (run queue: 2 at a time, 1 run per backfill at a time)
    shutil.copy(ROOT / "data" / "dagster_home" / "dagster.yaml", copy / "dagster.yaml")
    return config, copy


def test_cron_tick_backfills_the_missing_partitions_live(extended):
    config, home = extended
    cfg = load_config(config)
    wh = Warehouse(cfg.resolve(cfg.database))
    before_old = {layer: partition_rows(wh, layer, 0, 31) for layer in LAYERS}
    assert all(all(rows.values()) for rows in before_old.values()), before_old
    assert not any(any(partition_rows(wh, layer, 32, 63).values()) for layer in LAYERS)

    log = config.parent / "dagster_dev.log"
    env = {"DAGSTER_HOME": str(home), "AUTOINTERP_CONFIG": str(config),
           "AUTOINTERP_BACKFILL_CRON": "* * * * *", "AUTOINTERP_BACKFILL_INTERVAL_S": "5"}
    t0 = time.time()
    with dagster_dev(env, log) as port:
        [bf] = wait_for("the scheduled backfill", lambda: backfills(port), 240, log)
        t_launched = time.time() - t0

        # one backfill over exactly the partitions that were missing, for every partitioned asset
        assert bf["isAssetBackfill"] and sorted(bf["partitionNames"]) == NEW and bf["numPartitions"] == 2, bf
        assert sorted("/".join(k["path"]) for k in bf["assetSelection"]) == \
            sorted(a.key.to_user_string() for a in PARTITIONED_ASSETS)
        tags = {t["key"]: t["value"] for t in bf["tags"]}
        assert tags.get("dagster/from_automation_condition") == "true", tags

        def finished():
            [b] = backfills(port)
            return b if b["status"] in FINISHED else None

        done = wait_for("the backfill to finish", finished, 420, log, every=3)
        t_done = time.time() - t0
        assert done["status"] == "COMPLETED_SUCCESS", f"{done}\n{log.read_text()[-4000:]}"
        assert done["runs"] and all(r["status"] == "SUCCESS" for r in done["runs"]), done["runs"]
        for run in done["runs"]:
            run_tags = {t["key"]: t["value"] for t in run["tags"]}
            assert run_tags["dagster/backfill"] == bf["id"]
            # no run touched an old partition (a single-run asset's run carries a range instead of a key)
            for key in ("dagster/partition", "dagster/asset_partition_range_start",
                        "dagster/asset_partition_range_end"):
                assert run_tags.get(key, NEW[0]) in NEW, run_tags

        shot = _backfills_page(port, bf["id"])
    print(f"\nbackfill launched {t_launched:.0f}s and finished {t_done:.0f}s after dagster dev started "
          f"({len(done['runs'])} runs)")

    for layer in LAYERS:
        new = partition_rows(wh, layer, 32, 63)
        assert new["latent_stats"] == new["latent_selection"] == 32, (layer, new)
        assert new["examples"] > 0 and new["scores"] > 0, (layer, new)
        selected = wh.scalar("SELECT count(*) FROM latent_selection WHERE layer = ? AND latent BETWEEN 32 AND 63 "
                             "AND status = 'selected'", [layer])
        # the active explainer and the two baseline explainers (no LLM), each on every selected latent
        assert new["explanations"] == 3 * selected > 0, (layer, new)
        assert partition_rows(wh, layer, 0, 31) == before_old[layer]  # materialized partitions left alone
    assert shot.stat().st_size > 10_000


def _backfills_page(port: int, backfill_id: str) -> Path:
    """The UI's Backfills list (/overview/backfills) shows the backfill; screenshot as a test artifact."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "backfills.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/overview/backfills", wait_until="networkidle")
            _dismiss_modal(page)
            try:  # the list is the only backfill's row (GraphQL above found exactly one): id, target, status
                page.get_by_text(backfill_id, exact=True).first.wait_for(timeout=60_000)
                for text in ("2 partitions", "Success"):
                    page.get_by_text(text, exact=True).first.wait_for(timeout=30_000)
            finally:
                page.screenshot(path=str(shot))
            assert "view=backfills" in page.url, page.url
        finally:
            browser.close()
    return shot
