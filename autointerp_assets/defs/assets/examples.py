import dagster as dg

from ...core import stages
from ..execution import CLIENT, step_tags
from ..partitions import PARTITIONS, bounds
from ..resources import ProjectResource
from .activations import activations, latent_stats


def _ids(latents: list[int], limit: int = 200) -> str:
    return ", ".join(map(str, latents[:limit])) + (f" … (+{len(latents) - limit})" if len(latents) > limit else "")


@dg.asset(group_name="examples", kinds={"duckdb"}, partitions_def=PARTITIONS, deps=[activations, latent_stats],
          op_tags=step_tags(CLIENT),
          description="Train (explainer), test (scorers; disjoint from train) and non-activating windows per latent.")
def examples(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    layer, first, last = bounds(context.partition_key)
    out = stages.run_examples(ctx, layer, first, last)
    return dg.MaterializeResult(
        metadata={**{f"latents_{k}": v for k, v in out["latents"].items()},
                  **{f"examples_{k}": v for k, v in out["examples"].items()},
                  **{f"negatives_{k}": v for k, v in out["negative_sources"].items()},
                  "too_rare_latents": dg.MetadataValue.text(_ids(out["too_rare"])),
                  "dead_latents": dg.MetadataValue.text(_ids(out["dead"])),
                  "short_latents": dg.MetadataValue.text(_ids(out["short"])),
                  "neighbour_rows": out["neighbour_rows"], "embedded_windows": out["embedded_windows"],
                  "sampler_fp": out["sampler_fp"]})
