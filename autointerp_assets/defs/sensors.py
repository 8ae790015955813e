"""explainer_change: re-explain and re-score every materialized partition (and re-run the calibration) when the
active explainer changes.

The sensor reads the registry (a YAML file, not the DuckDB warehouse, so it never waits for a
writer), fingerprints the active explainer and compares it with its cursor. On a change it requests
one explanations + scores + pages run per partition whose examples are materialized and that has no
explanations for that fingerprint yet, and one calibration run (job ``calibrate``) when the calibration has not
run with it. Run keys are ``<explainer_fp>|<partition>``, so a request is
never launched twice; runs are pinned to the explainer's name and tagged with it. Earlier explainers'
rows stay in DuckDB (keyed by explainer_fp).
"""

from __future__ import annotations

import dagster as dg

from ..core.identity import explainer_fp
from .assets import calibration, examples, explanations
from .jobs import calibrate, reexplain_and_rescore
from .resources import ProjectResource

EXPLAINER_TAG, EXPLAINER_FP_TAG = "autointerp/explainer", "autointerp/explainer_fp"


def explained_partitions(instance: dg.DagsterInstance, efp: str, asset=explanations) -> set[str | None]:
    """Partitions of ``asset`` materialized with explainer fingerprint ``efp`` (from Dagster's records; None = the
    unpartitioned asset)."""
    done, cursor = set(), None
    while True:
        page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset.key), limit=1000,
                                               cursor=cursor)
        for rec in page.records:
            mat = rec.asset_materialization
            fp = mat.metadata.get("explainer_fp") if mat else None
            if fp is not None and getattr(fp, "value", fp) == efp:
                done.add(mat.partition)
        if not page.has_more:
            return done
        cursor = page.cursor


@dg.sensor(name="explainer_change", jobs=[reexplain_and_rescore, calibrate], minimum_interval_seconds=15,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="When the registry's active explainer changes (new fingerprint), request explanations, "
                       "scores and browser pages for every materialized partition, and the calibration; old "
                       "explainers' rows stay.")
def explainer_change(context: dg.SensorEvaluationContext, project: ProjectResource):
    registry = project.registry()
    name = registry.active_explainer
    efp = explainer_fp(project.config())
    if context.cursor == efp:
        return dg.SkipReason(f"explainer '{name}' ({efp}) unchanged")
    materialized = context.instance.get_materialized_partitions(examples.key)
    todo = sorted(materialized - explained_partitions(context.instance, efp))
    # the calibration re-runs with a new explainer once it has run at all (make run / the UI materialize it first)
    recalibrate = bool(context.instance.get_latest_materialization_event(calibration.key)) and \
        None not in explained_partitions(context.instance, efp, calibration)
    if not todo and not recalibrate:  # first tick on an up-to-date project, or a switch back to an explainer already run
        return dg.SensorResult(skip_reason=f"explainer '{name}' ({efp}) already explains all "
                                           f"{len(materialized)} materialized partitions", cursor=efp)
    context.log.info(f"explainer '{name}' ({efp}): requesting {len(todo)} partitions"
                     + (" and the calibration" if recalibrate else ""))
    tags = {EXPLAINER_TAG: name, EXPLAINER_FP_TAG: efp}
    # run config replaces the resource's whole config, so the config path travels too
    run_config = {"resources": {"project": {"config": {"config_path": project.config_path, "explainer": name}}}}
    requests = [dg.RunRequest(run_key=f"{efp}|{key}", partition_key=key, tags=tags, run_config=run_config,
                              job_name=reexplain_and_rescore.name) for key in todo]
    if recalibrate:
        requests.append(dg.RunRequest(run_key=f"{efp}|calibration", tags=tags, run_config=run_config,
                                      job_name=calibrate.name))
    return dg.SensorResult(cursor=efp, run_requests=requests)
