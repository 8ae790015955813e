"""Scheduled backfills: on a cron tick, declarative automation requests the missing and stale partitions,
and the automation sensor (emit_backfills=True) turns one tick's request into one backfill."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from dagster._core.definitions.automation_tick_evaluation_context import build_run_requests

from autointerp_assets.defs.assets import PARTITIONED_ASSETS
from autointerp_assets.defs.automation import DEFAULT_CRON, scheduled_backfill
from autointerp_assets.defs.partitions import PARTITIONS

UTC = dt.timezone.utc
DAY1 = dt.datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # an hour before the 03:00 tick


def at(day: dt.datetime, hours: float) -> dt.datetime:
    return day + dt.timedelta(hours=hours)


@pytest.fixture(scope="module")
def defs():
    from autointerp_assets.definitions import defs

    return defs


def report(instance, asset, partition=None):
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition))


def test_cron_tick_backfills_missing_then_stale_partitions(defs):
    keys = PARTITIONS.get_partition_keys()
    done, missing = keys[:2], keys[2:]
    partitioned = [a.key for a in PARTITIONED_ASSETS]
    with dg.instance_for_test() as instance:
        for asset in ("corpus_tokens", "sparse_coders", "calibration"):
            report(instance, asset)
        for key in done:
            for asset in partitioned:
                report(instance, asset, key)

        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=DAY1)
        assert r.total_requested == 0  # no cron tick yet

        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor,
                                              evaluation_time=at(DAY1, 1.1))
        for key in partitioned:
            assert r.get_requested_partitions(key) == set(missing), key
        assert r.get_num_requested(dg.AssetKey("corpus_tokens")) == 0
        assert r.total_requested == len(partitioned) * len(missing)

        # what the automation sensor launches for this tick: one backfill over all of it, not loose runs
        requests = build_run_requests(list(r._requested_subsets), defs.resolve_asset_graph(), {},
                                      emit_backfills=scheduled_backfill.emit_backfills)
        assert len(requests) == 1 and requests[0].requires_backfill_daemon()
        subset = requests[0].asset_graph_subset
        assert {k: set(subset.get_partitions_subset(k).get_partition_keys()) for k in partitioned} == \
            {k: set(missing) for k in partitioned}

        # later the same day: the tick was handled, nothing new
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor,
                                              evaluation_time=at(DAY1, 5))
        assert r.total_requested == 0

        # examples of a done partition re-made (e.g. by hand): its downstream is stale at the next tick,
        # together with the partitions still missing (the backfill above was never run)
        report(instance, "examples", done[0])
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor,
                                              evaluation_time=at(DAY1, 6))
        assert r.total_requested == 0  # waits for the cron
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor,
                                              evaluation_time=at(DAY1, 25.1))
        for name in ("explanations", "scores"):
            assert r.get_requested_partitions(dg.AssetKey(name)) == {done[0], *missing}, name
        assert r.get_requested_partitions(dg.AssetKey("examples")) == set(missing)

        # the backfill runs (materializations in pipeline order, each asset after its upstream): the next
        # tick finds nothing missing or stale, so one backfill is never followed by another
        for key in missing:
            for asset in partitioned:
                report(instance, asset, key)
        for asset in ("explanations", "scores"):
            report(instance, asset, done[0])
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor,
                                              evaluation_time=at(DAY1, 49.1))
        # only the cross-partition analyses (scorer agreement, SAE similarity) follow, once every partition
        # they read is there; then nothing
        assert r.total_requested == 1 and r.get_num_requested(dg.AssetKey("analyses")) == 1
        report(instance, "analyses")
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor,
                                              evaluation_time=at(DAY1, 73.1))
        assert r.total_requested == 0


def test_automation_sensor_is_on_and_emits_backfills(defs):
    sensor = defs.resolve_sensor_def("scheduled_backfill")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.emit_backfills and sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # every asset carries the cron condition (a plain schedule would launch partition-less runs)
    for key in defs.resolve_all_asset_keys():
        cond = defs.resolve_assets_def(key).automation_conditions_by_key[key]
        assert cond.get_label() == f"scheduled_refresh({DEFAULT_CRON})"
