import dagster as dg

from ...core import stages
from ..execution import FORWARD, step_tags
from ..metadata import table_md
from ..resources import ProjectResource
from .corpus import corpus_tokens


@dg.asset(op_tags=step_tags(FORWARD), group_name="sparse_coders", kinds={"torch", "duckdb"}, deps=[corpus_tokens],
          description="One sparse coder per hookpoint: trained TopK SAEs (offline default) or a checkpoint "
                      "(sparsify SAE/transcoder, SAELens, Gemma Scope), from a local dir or the Hub.")
def sparse_coders(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    infos = stages.run_sparse_coders(project.context(context.log))
    rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in i.items() if k != "path"} for i in infos]
    return dg.MaterializeResult(metadata={"coders": table_md(rows), "hookpoints": len(infos)})
