import dagster as dg

from ...core import pipeline
from ..metadata import table_md
from ..partitions import PARTITIONS, bounds
from ..resources import LLMResource, ProjectResource
from .examples import examples


@dg.asset(group_name="explanations", kinds={"vllm", "duckdb"}, partitions_def=PARTITIONS, deps=[examples],
          description="One explanation per selected latent and explainer fingerprint; parse failures kept with "
                      "their raw text (never scored).")
def explanations(context: dg.AssetExecutionContext, project: ProjectResource, llm: LLMResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    layer, first, last = bounds(context.partition_key)
    client = llm.client(ctx.cfg.explainer.llm, ctx.workdir)
    out = pipeline.run_explanations(ctx, client, layer, first, last)
    sample = [{"latent": lat, "explanation": (text or "(parse failure)")[:120]} for lat, text in out.pop("sample")]
    status = out.pop("status")
    return dg.MaterializeResult(metadata={
        **out, **{f"explanations_{k}": v for k, v in status.items()}, "sample": table_md(sample)})
