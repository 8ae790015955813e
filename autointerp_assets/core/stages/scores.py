"""Stage scores: every configured scorer of a partition's ok explanations, per latent, with the
random-explanation control, bootstrap intervals and heuristic flags.

Three passes share one row builder (:mod:`.score_rows`) and one merge (monotone: a failure never replaces a
done row), each committing its own transaction with its LLM calls:

1. :mod:`.classifier_scores` -- the yes/no scorers (detection, fuzzing): every kind x latent x batch in ONE
   ``generate`` call, under the budget;
2. :mod:`.scorers` -- every other scorer behind one interface (embedding, surprisal, simulation, intruder, the
   controls), the intervals of pass 1's rows, the scorers' sensitivity and the heuristic flags;
3. :mod:`.intervention_scores` -- the intervention scorer on the partition's steering rows (when configured).

A budget stop or too many failures end the stage after the pass that met them (its rows committed).
"""

from __future__ import annotations

from .classifier_scores import run_classifier_scores
from .context import Context
from .intervention_scores import run_intervention_scores
from .scorers import run_scorers


def run_scores(ctx: Context, client, layer: str, first: int, last: int, explainer_fp: str | None = None,
               force: bool = False, intervention: bool = True) -> dict:
    """Score the partition with every configured scorer; the result of pass 2 (per-scorer summary, controls,
    sensitivity, flags, seconds, ledger totals) with pass 3's folded in and pass 1's under ``classifiers``.
    ``explainer_fp``: score another explainer's stored explanations (default: the configured explainer's);
    ``force``: re-send every pair, not only those without a done score; ``intervention``: run pass 3 when
    ``scoring.scorers`` names it. Pass 1 sends only what is missing: nothing when the explanations step already
    scored each latent as its explanation landed (:mod:`.explain_and_score`)."""
    first_pass = run_classifier_scores(ctx, client, layer, first, last, explainer_fp=explainer_fp, force=force)
    out = run_scorers(ctx, client, layer, first, last, explainer_fp=explainer_fp, force=force)
    if intervention and "intervention" in ctx.cfg.scoring.scorers:  # steered vs clean (docs/intervention.md)
        _fold_intervention(out, run_intervention_scores(ctx, client, layer, first, last, explainer_fp=explainer_fp,
                                                        force=force))
    return {**out, "classifiers": first_pass}


def _fold_intervention(out: dict, inter: dict) -> None:
    """Pass 3's result folded into pass 2's (one metadata table and summary per partition)."""
    out["summary"].update(inter["summary"])
    out["control_values"].update(inter["control_values"])
    out["sensitivity"] = out.get("sensitivity", []) + inter["sensitivity"]
    out["seconds"]["intervention"] = inter["seconds"]
    for k in ("llm_calls", "prompt_tokens", "completion_tokens"):
        out[k] = out.get(k, 0) + inter[k]
    out["intervention_changed_share"] = inter["changed_share"]


def scores_metadata(out: dict) -> dict:
    """Flat Dagster metadata from run_scores' result: per scorer median, IQR, control median, median
    difference and its 95 % interval; flag counts; passes 2 and 3's seconds and ledger totals."""
    md: dict = {}
    for name, s in out["summary"].items():
        md[f"{name}_median_{s['metric']}"] = s["median"]
        md[f"{name}_iqr"] = [s["q25"], s["q75"]]
        md[f"{name}_latents_undefined"] = s["latents_undefined"]
        if "median_control" in s:
            md[f"{name}_median_control"] = s["median_control"]
            md[f"{name}_median_difference"] = s["median_difference"]
            md[f"{name}_difference_ci95"] = [s["difference_ci_low"], s["difference_ci_high"]]
    for v in out.get("sensitivity", []):
        md[f"{v['scorer']}_share_changed_by_control"] = v["share"]
        md[f"{v['scorer']}_reads_explanation"] = {True: "yes", False: "NO", None: "unclear"}[v["reads_explanation"]]
    md.update({k if k.startswith("flag_") else f"flag_{k}": v for k, v in out["flags"].items()})
    md.update({f"scorers_{k}": out[k] for k in ("llm_calls", "prompt_tokens", "completion_tokens", "cost_usd")
               if k in out})
    md["scorers_seconds"] = out["seconds"]
    return md
