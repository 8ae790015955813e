import dagster as dg

from ...core import pipeline
from ..partitions import PARTITIONS, bounds
from ..resources import ProjectResource
from .activations import activations, latent_stats

DISJOINT = "train_test_disjoint"


@dg.asset(group_name="examples", kinds={"duckdb"}, partitions_def=PARTITIONS, deps=[activations, latent_stats],
          check_specs=[dg.AssetCheckSpec(DISJOINT, asset="examples",
                                         description="No window is both a train and a test example of a latent.")],
          description="Train (explainer), test (scorers; disjoint from train) and non-activating windows per latent.")
def examples(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    layer, first, last = bounds(context.partition_key)
    out = pipeline.run_examples(ctx, layer, first, last)
    overlap = ctx.wh.scalar(
        "SELECT count(*) FROM examples a JOIN examples b USING (layer, latent, row_id, start_pos) "
        "WHERE a.split = 'train' AND b.split = 'test' AND layer = ? AND latent BETWEEN ? AND ?", [layer, first, last])
    return dg.MaterializeResult(
        metadata={**{f"latents_{k}": v for k, v in out["latents"].items()},
                  **{f"examples_{k}": v for k, v in out["examples"].items()}, "sampler_fp": out["sampler_fp"]},
        check_results=[dg.AssetCheckResult(check_name=DISJOINT, passed=overlap == 0,
                                           metadata={"overlapping_windows": overlap})])
