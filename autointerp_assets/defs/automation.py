"""Scheduled backfills: declarative automation on a cron, emitted as real backfills (UI: Runs → Backfills).

A plain ScheduleDefinition on our static multi-partitioned assets would launch runs without a
partition key (which fail); a schedule yielding one run per partition gives runs, not a backfill.
Instead every asset carries ``scheduled_refresh(cron)``: on each cron tick it is requested for the
partitions that are missing, or stale (an upstream partition was materialized after it, or its code
version changed), once their upstreams are present or requested in the same tick. The automation
sensor ``scheduled_backfill`` evaluates the conditions and, with ``emit_backfills=True``, launches
what one tick requests as one backfill (so ``activations`` keeps its single-run policy: one forward
pass for all partitions).
"""

from __future__ import annotations

import os

import dagster as dg

CRON_ENV = "AUTOINTERP_BACKFILL_CRON"
DEFAULT_CRON = "0 3 * * *"  # daily at 03:00 UTC
INTERVAL_ENV = "AUTOINTERP_BACKFILL_INTERVAL_S"
DEFAULT_INTERVAL_S = 30  # how often the daemon evaluates the conditions; a tick is acted on at most this late


def backfill_cron() -> str:
    return os.environ.get(CRON_ENV) or DEFAULT_CRON


def evaluation_interval() -> int:
    raw = os.environ.get(INTERVAL_ENV) or str(DEFAULT_INTERVAL_S)
    if not raw.isdigit() or int(raw) < 5:  # the asset daemon loops every 5 s: less is not honoured
        raise ValueError(f"{INTERVAL_ENV}={raw!r}: set it to a whole number of seconds >= 5 (default 30)")
    return int(raw)


def scheduled_refresh(cron: str) -> dg.AutomationCondition:
    """On a cron tick: the missing or stale partitions, once their dependencies are there (or requested too)."""
    AC = dg.AutomationCondition
    stale = (AC.any_deps_updated() | AC.code_version_changed()).since_last_handled().with_label("stale")
    return (
        AC.cron_tick_passed(cron)  # only on the tick itself: staleness found between ticks waits for the next
        & (AC.missing() | stale)
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label(f"scheduled_refresh({cron})")


def with_scheduled_refresh(assets: list[dg.AssetsDefinition], cron: str) -> list[dg.AssetsDefinition]:
    return [a.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=scheduled_refresh(cron)))
            for a in assets]


scheduled_backfill = dg.AutomationConditionSensorDefinition(
    "scheduled_backfill", target=dg.AssetSelection.all(), emit_backfills=True,
    default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=evaluation_interval(),
    description="Evaluates the assets' scheduled_refresh cron conditions; what a tick requests is launched as "
                "one backfill.")
