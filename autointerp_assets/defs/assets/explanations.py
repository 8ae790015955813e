import dagster as dg

from ...core import stages
from ...core.errors import StageFailed
from ...core.explainer_baselines import is_baseline
from ...core.llm.accounting import BudgetExceeded
from ..execution import CLIENT, step_tags
from ..metadata import readable, table_md
from ..partitions import PARTITIONS, bounds
from ..resources import LLMResource, ProjectResource
from .examples import examples
from .steering import steering

FORCE_TAG = "autointerp/force"  # a run tagged "true" re-sends every latent's requests (ok rows still kept on failure)


def budget_failure(e: BudgetExceeded | StageFailed) -> dg.Failure:
    """A budget stop or a failed stage: the one-line reason, the committed work and its spend as metadata; the
    step fails (a re-run continues with what is missing or failed)."""
    summary = {k: v for k, v in getattr(e, "summary", {}).items() if isinstance(v, (int, float, str, bool))}
    return dg.Failure(description=str(e), metadata=summary, allow_retries=False)


def forced(context) -> bool:
    return str(context.run.tags.get(FORCE_TAG, "")).lower() in ("1", "true", "yes")


def scores_follow(context) -> bool:
    """Whether this run also materializes ``scores`` (then each latent's yes/no scoring starts in this step as
    soon as its explanation lands, where the engines allow it)."""
    keys = context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys
    return dg.AssetKey("scores") in keys


@dg.asset(group_name="explanations", kinds={"vllm", "duckdb"}, partitions_def=PARTITIONS, deps=[examples, steering],
          op_tags=step_tags(CLIENT),
          description="One explanation per selected latent and explainer fingerprint: the active explainer, then the "
                      "baseline explainers (no LLM) and the output-centric explainers beside it on the same latents; "
                      "parse failures kept with their raw text (never scored). When the run also materializes "
                      "scores and the LLMs are servers, each latent's detection / fuzzing requests go out as soon "
                      "as its explanation lands (no wait for the whole partition; the scores step finds them done). "
                      "Every LLM call is accounted in llm_calls.")
def explanations(context: dg.AssetExecutionContext, project: ProjectResource, llm: LLMResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    layer, first, last = bounds(context.partition_key)
    client = None if is_baseline(ctx.cfg.explainer.kind) else llm.client(ctx.cfg.explainer.llm, ctx.workdir)
    pipelining = getattr(client, "concurrent", False) and scores_follow(context)  # a server, and scores follow
    scorer = llm.client(ctx.cfg.scorer_llm, ctx.workdir) if pipelining else None
    first_pass = {}
    try:
        if pipelining and stages.pipelined(client, scorer):
            out, first_pass = stages.run_explain_and_score(ctx, client, scorer, layer, first, last,
                                                           force=forced(context))
        else:
            out = stages.run_explanations(ctx, client, layer, first, last, force=forced(context))
    except (BudgetExceeded, StageFailed) as e:
        raise budget_failure(e) from None
    sample = [{"latent": lat, "explanation": text or "(parse failure)"} for lat, text in out.pop("sample")]
    status = out.pop("status")
    # the baseline (no LLM) and output-centric explainers on the same latents (skipped where already current)
    baselines = stages.run_baselines(ctx, None, layer, first, last, score=False,
                                       explainer_client=lambda: llm.client(ctx.cfg.explainer.llm, ctx.workdir))
    scored = {f"scored_here_{k}": first_pass[k] for k in ("latents_sent", "llm_calls", "stopped") if k in first_pass}
    return dg.MaterializeResult(metadata=readable({
        **out, **scored, **{f"explanations_{k}": v for k, v in status.items()}, "sample": table_md(sample),
        **{f"baseline_{k}_explainer_fp": v for k, v in baselines.items()}}))
