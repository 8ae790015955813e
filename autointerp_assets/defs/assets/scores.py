import dagster as dg

from ...core import pipeline
from ...core.llm.accounting import BudgetExceeded
from ..metadata import histogram_md, histogram_png, plot_md
from ..partitions import PARTITIONS, bounds
from ..resources import LLMResource, ProjectResource
from .explanations import budget_failure, explanations


@dg.asset(group_name="scores", kinds={"vllm", "duckdb"}, partitions_def=PARTITIONS, deps=[explanations],
          description="Detection and fuzzing scores per latent (balanced accuracy, F1, precision, recall, AUROC). "
                      "Every LLM call is accounted in llm_calls.")
def scores(context: dg.AssetExecutionContext, project: ProjectResource, llm: LLMResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    layer, first, last = bounds(context.partition_key)
    client = llm.client(ctx.cfg.scorer_llm, ctx.workdir)
    try:
        out = pipeline.run_scores(ctx, client, layer, first, last)
    except BudgetExceeded as e:
        raise budget_failure(e) from None
    md = {}
    for kind, s in out.pop("scorers").items():
        md.update({f"{kind}_{k}": v for k, v in s.items()})
    baccs = out.pop("balanced_accuracies")
    for kind, vals in baccs.items():
        md[f"{kind}_histogram"] = histogram_md(vals, 0.0, 1.0, 10, f"{kind} balanced accuracy per latent")
    md["score_histogram_plot"] = plot_md(histogram_png(baccs, title="balanced accuracy per latent"),
                                         "score histogram")
    return dg.MaterializeResult(metadata={**out, **md})
