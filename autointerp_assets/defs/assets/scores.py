import dagster as dg

from ...core import pipeline
from ..metadata import histogram_md
from ..partitions import PARTITIONS, bounds
from ..resources import LLMResource, ProjectResource
from .explanations import explanations


@dg.asset(group_name="scores", kinds={"vllm", "duckdb"}, partitions_def=PARTITIONS, deps=[explanations],
          description="Detection and fuzzing scores per latent (balanced accuracy, F1, precision, recall, AUROC).")
def scores(context: dg.AssetExecutionContext, project: ProjectResource, llm: LLMResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    layer, first, last = bounds(context.partition_key)
    client = llm.client(ctx.cfg.scorer_llm, ctx.workdir)
    out = pipeline.run_scores(ctx, client, layer, first, last)
    md = {}
    for kind, s in out.pop("scorers").items():
        md.update({f"{kind}_{k}": v for k, v in s.items()})
    for kind, vals in out.pop("balanced_accuracies").items():
        md[f"{kind}_histogram"] = histogram_md(vals, 0.0, 1.0, 10, f"{kind} balanced accuracy per latent")
    return dg.MaterializeResult(metadata={**out, **md})
