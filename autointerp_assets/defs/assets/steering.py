import dagster as dg

from ...core import stages
from ..execution import FORWARD, step_tags
from ..metadata import table_md
from ..partitions import PARTITIONS, bounds
from ..resources import ProjectResource
from .examples import examples


@dg.asset(group_name="steering", kinds={"pytorch", "duckdb"}, partitions_def=PARTITIONS, deps=[examples],
          op_tags=step_tags(FORWARD),
          description="Per selected latent: the strength of its decoder direction (added at its hookpoint) that "
                      "moves the next-token distribution by steering.target_kl nats, the tokens it promotes, and "
                      "continuations of neutral prompts with and without it. Read by the intervention scorer and "
                      "the output-centric explainers; skipped when neither is configured.")
def steering(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    if not stages.steering_needed([ctx.cfg] + [b.cfg for b in stages.baseline_contexts(ctx)]):
        return dg.MaterializeResult(metadata={"skipped": "no intervention scorer (scoring.scorers) and no "
                                                         "output-centric explainer (explainer.kind, output_explainers)"})
    layer, first, last = bounds(context.partition_key)
    out = stages.run_steering(ctx, layer, first, last)
    sample = [{"latent": lat, "promoted tokens": ", ".join(repr(t) for t in toks)} for lat, toks in out.pop("sample", [])]
    return dg.MaterializeResult(metadata={**out, "sample": table_md(sample)})
