import dagster as dg

from ...core import stages
from ...core.explainer_baselines import is_baseline
from ..execution import CLIENT, step_tags
from ..metadata import table_md
from ..resources import LLMResource, ProjectResource
from .corpus import corpus_tokens


def _r(v):
    return round(v, 3) if isinstance(v, float) else v


@dg.asset(op_tags=step_tags(CLIENT), group_name="calibration", kinds={"vllm", "duckdb"}, deps=[corpus_tokens],
          description="Known-answer calibration before a costly run: planted latents of known meaning (token-set "
                      "indicators built from the corpus) sampled with the real sampler and scored with the configured "
                      "scorers using their gold explanation, a deranged gold one (control) and the configured "
                      "explainer's own. Power per scorer (gold vs control) and recovery per explainer (is its "
                      "explanation nearest to the right gold?). Re-run by the explainer_change sensor.")
def calibration(context: dg.AssetExecutionContext, project: ProjectResource, llm: LLMResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    explainer = None if is_baseline(ctx.cfg.explainer.kind) else llm.client(ctx.cfg.explainer.llm, ctx.workdir)
    out = stages.run_calibration(ctx, explainer, llm.client(ctx.cfg.scorer_llm, ctx.workdir))
    power = [{"scorer": p["scorer"], "metric": p["metric"], "latents": p["latents"],
              "gold / control / explainer (medians)":
                  " / ".join("–" if p[k] is None else f"{p[k]:.3f}" for k in ("median_gold", "median_control",
                                                                                "median_explainer")),
              "gold − control [95 % CI]": "–" if p["power_median_difference"] is None else
              f"{p['power_median_difference']:+.3f} [{p['power_ci_low']:+.3f}, {p['power_ci_high']:+.3f}]",
              "gold wins": "–" if p["gold_wins"] is None else f"{p['gold_wins']:.0%}"} for p in out["power"]]
    md = {"power": table_md(power),
          "recovery": table_md([{k: _r(v) for k, v in r.items() if k != "recovered_by"} for r in out["recovery"]]),
          "planted_latents": table_md(out["planted"]), "calibration_fp": out["calibration_fp"],
          "explainer_fp": out["explainer_fp"], "seconds": out["seconds"]}
    for p in out["power"]:
        md[f"{p['scorer']}_gold_wins"] = p["gold_wins"]
        md[f"{p['scorer']}_power_median_difference"] = p["power_median_difference"]
    for r in out["recovery"]:
        md[f"recovery_{r['explainer'].replace(' ', '_')}"] = r["recovery"]
    return dg.MaterializeResult(metadata=md)
