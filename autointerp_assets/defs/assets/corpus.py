import dagster as dg

from ...core import stages
from ..execution import CLIENT, step_tags
from ..resources import ProjectResource


@dg.asset(op_tags=step_tags(CLIENT), group_name="corpus", kinds={"duckdb"},
          description="Corpus rows of ctx_len token ids (BOS first) in table `tokens`.")
def corpus_tokens(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    out = stages.run_corpus(project.context(context.log))
    return dg.MaterializeResult(metadata={k: v for k, v in out.items()})
