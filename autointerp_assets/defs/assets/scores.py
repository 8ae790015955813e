import dagster as dg

from ...core import stages
from ...core.errors import StageFailed
from ...core.llm.accounting import BudgetExceeded
from ...core.stages import score_plots
from ..execution import CLIENT, step_tags
from ..metadata import histogram_md, histogram_png, medians_png, plot_md, readable, table_md
from ..partitions import PARTITIONS, bounds
from ..resources import LLMResource, ProjectResource
from .explanations import budget_failure, explanations, forced


@dg.asset(group_name="scores", kinds={"vllm", "duckdb"}, partitions_def=PARTITIONS, deps=[explanations],
          op_tags=step_tags(CLIENT),
          description="Detection and fuzzing scores per latent (balanced accuracy, F1, precision, recall, AUROC), "
                      "then the extra scorers (scoring: simulation, embedding, surprisal, intruder, "
                      "intervention), the random-explanation control, per-latent bootstrap 95 % CIs and heuristic "
                      "flags, for the active explainer and, on the same latents, the baseline and output-centric "
                      "explainers. Every LLM call is accounted in llm_calls.")
def scores(context: dg.AssetExecutionContext, project: ProjectResource, llm: LLMResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    layer, first, last = bounds(context.partition_key)
    client = llm.client(ctx.cfg.scorer_llm, ctx.workdir)
    force = forced(context)
    try:
        more = stages.run_scores(ctx, client, layer, first, last, force=force)
    except (BudgetExceeded, StageFailed) as e:
        raise budget_failure(e) from None
    out = more.pop("classifiers")
    # the key result first: every scorer's median against its random-explanation control, then the plots
    md = {"controls": table_md(control_rows(more))}
    if more.get("sensitivity"):  # does each scorer read the explanation? in words, right after the controls
        md["scorer_findings"] = dg.MetadataValue.md("\n\n".join(v["finding"] for v in more["sensitivity"]))
    # the baseline and output-centric explainers, scored like the active one on the same latents (skipped where
    # already current)
    baselines = stages.run_baselines(ctx, client, layer, first, last, score=True,
                                       explainer_client=lambda: llm.client(ctx.cfg.explainer.llm, ctx.workdir))
    if baselines:
        md["baselines_vs_explainer"] = table_md(stages.baseline_comparison(ctx, layer, first, last))
        md["companion_controls"] = table_md(stages.companion_controls(ctx, layer, first, last))
    if more.get("intervention_changed_share") is not None:  # share of pairs the intervention changed at all
        md["intervention_changed_share"] = more["intervention_changed_share"]
    baccs = out.pop("balanced_accuracies")
    ctl = {f"{k} control": v for k, v in more["control_values"].items() if k in baccs}
    md["score_histogram_plot"] = plot_md(histogram_png({**baccs, **ctl}, title="balanced accuracy per latent "
                                                       "(real vs random-explanation control)"), "score histogram")
    md.update(scorer_plots(ctx, layer, first, last, more["explainer_fp"]))
    md.update(stages.scores_metadata(more))
    for kind, s in out.pop("scorers").items():
        md.update({f"{kind}_{k}": v for k, v in s.items()})
    for kind, vals in baccs.items():
        md[f"{kind}_histogram"] = histogram_md(vals, 0.0, 1.0, 10, f"{kind} balanced accuracy per latent")
    return dg.MaterializeResult(metadata=readable({**md, **out}))


def scorer_plots(ctx, layer: str, first: int, last: int, efp: str) -> dict:
    """A histogram per scorer (real vs control, on its metric's scale) and the medians of every layer."""
    md = {}
    for scorer, v in score_plots.partition_values(ctx, layer, first, last, efp).items():
        lo, hi = score_plots.metric_range(v["metric"])
        series = {scorer: v["real"], **({f"{scorer} control": v["control"]} if v["control"] else {})}
        md[f"{scorer}_plot"] = plot_md(histogram_png(series, lo, hi, title=f"{scorer}: {v['metric']} per latent, "
                                                     "real vs random-explanation control"), f"{scorer} plot")
    rows = score_plots.layer_medians(ctx, efp)
    panels: dict[str, list[dict]] = {}
    for r in rows:
        panels.setdefault(r["scorer"], []).append(r)
    if panels:
        ranges = {s: score_plots.metric_range(p[0]["metric"]) for s, p in panels.items()}
        md["layers_plot"] = plot_md(medians_png(panels, ranges, "median per latent across layers (all materialized "
                                                "latent ranges), real vs control"), "scores across layers")
    return md


def control_rows(more: dict) -> list[dict]:
    """One row per scorer: median real (IQR), median control, median paired difference and its 95 % CI."""
    def f(v, sign=""):
        return "–" if v is None else f"{v:{sign}.3f}"
    rows = []
    for name, s in more["summary"].items():
        d = s.get("median_difference")
        rows.append({"scorer": name, "metric": s["metric"], "latents": s["latents"],
                     "undefined": s.get("latents_undefined", 0),
                     "median (IQR)": f"{f(s['median'])} ({f(s['q25'])}–{f(s['q75'])})",
                     "median control": f(s.get("median_control")),
                     "median difference [95 % CI]": "–" if d is None else
                     f"{f(d, '+')} [{f(s['difference_ci_low'], '+')}, {f(s['difference_ci_high'], '+')}]"})
    return rows
