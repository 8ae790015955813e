import dagster as dg

from ...core import stages
from ..execution import CLIENT, step_tags
from ..partitions import PARTITIONS, bounds
from ..resources import ProjectResource
from .scores import scores


@dg.asset(op_tags=step_tags(CLIENT), group_name="analyses", kinds={"duckdb"}, partitions_def=PARTITIONS, deps=[scores],
          description="Per explained latent: its decoder row and the sentence embedding of each explainer's "
                      "explanation, keyed by the sparse coder (what the views latent_matches / sae_similarity "
                      "compare across hookpoints or two coders of one hookpoint).")
def latent_vectors(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    return dg.MaterializeResult(metadata=stages.run_latent_vectors(ctx, *bounds(context.partition_key)))
