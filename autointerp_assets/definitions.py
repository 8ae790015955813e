"""The code location: every asset and check, its resources, the automation and the executor.

In-process execution (the default) keeps one vLLM engine alive across the steps of a run (an engine start costs
~20 s on CPU) and avoids 2-core oversubscription by parallel step processes; with the config's ``ray:`` section,
each step is a Ray job on a cluster instead (defs/execution.py).

Automation: ``explainer_change`` (sensor over the explainer registry) re-explains every materialized
partition when the active explainer changes; ``scheduled_backfill`` (declarative automation on the
cron $AUTOINTERP_BACKFILL_CRON, default daily 03:00 UTC) backfills missing and stale partitions.
"""

import dagster as dg

from .defs.assets import ALL
from .defs.automation import backfill_cron, scheduled_backfill, with_scheduled_refresh
from .defs.checks import CHECKS
from .defs.execution import executor
from .defs.jobs import JOBS
from .defs.resources import default_resources
from .defs.sensors import explainer_change

defs = dg.Definitions(assets=with_scheduled_refresh(ALL, backfill_cron()), asset_checks=CHECKS,
                      sensors=[explainer_change, scheduled_backfill], jobs=JOBS, resources=default_resources(),
                      executor=executor())
