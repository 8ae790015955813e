"""Partitioned asset checks that read the warehouse: every check runs, and is recorded, per partition.

- ``train_test_disjoint``: no corpus token is in both a train and a test window of a latent (so no shared
  activation peak either), and the explainer's negatives share no window with the scorers'.
- ``non_activating_silent``: the latent never fires inside one of its non-activating windows.
- ``examples_not_empty``: the partition selected latents and gave each of them train and test windows
  (a partition whose latents are all dead or too rare would otherwise pass through silently).
- ``explanations_cover_selection``: the active explainer wrote a row for every selected latent of the
  partition, and at most ``failures.max_share`` of them are failures.
- ``scores_for_every_explanation``: every ok explanation of the active explainer has a score from every
  configured scorer, and at most ``failures.max_share`` of those scores failed.
- ``control_at_chance`` (warning): the random-explanation control's median sits within
  ``scoring.control_tolerance`` of chance (0.5 for balanced accuracy / AUROC, 0 for correlation).
  A control far from chance means the scorer reads something other than the explanation (a prompt
  artefact, a class bias), and the real scores of that partition cannot be taken at face value.
- ``scorer_reads_explanation`` (warning): every controlled scorer changes at least
  ``scoring.sensitivity_min_share`` of its answers when the explanation is swapped for another latent's
  (table scorer_sensitivity). A scorer below it -- the upper end of the share's interval -- demonstrably does
  not read the explanation, and a control "at chance" next to a real score "at chance" says nothing then.
"""

# no `from __future__ import annotations`: Dagster inspects the context annotation at definition time
import dagster as dg

from ..core.identity import explainer_fp
from ..core.stages.examples import check_examples
from ..core.stages.score_rows import latent_range
from ..core.storage import queries
from .assets import examples, explanations, scores
from .metadata import table_md
from .partitions import PARTITIONS, bounds
from .resources import ProjectResource


def _partition(context, project: ProjectResource):
    cfg = project.config()
    ctx = project.context(context.log)
    return ctx, cfg, *bounds(context.partition_key)


# --- the checks' logic over the warehouse: (passed, metadata) for one partition -------------------
def examples_status(wh, layer: str, first: int, last: int) -> tuple[bool, dict]:
    status = dict(wh.query(queries.RANGE_SELECTION_COUNTS, [layer, first, last]).iter_rows())
    short = wh.scalar(queries.RANGE_OVERLAPPING_SELECTED, [layer, first, last, layer])
    selected = status.get("selected", 0)
    return selected > 0 and short == 0, {"selected": selected, "selected_without_train_or_test": short,
                                         **{f"latents_{k}": v for k, v in status.items() if k != "selected"}}


def explanations_status(wh, efp: str, layer: str, first: int, last: int, max_share: float = 1.0) -> tuple[bool, dict]:
    counts = wh.query(queries.RANGE_EXPLANATION_COVERAGE, [efp, layer, first, last]).row(0, named=True)
    failed = counts["explained"] - counts["ok"]
    fine = counts["explained"] > 0 and failed / counts["explained"] <= max_share
    return counts["missing"] == 0 and fine, {"explainer_fp": efp, **counts, "failed": failed, "max_share": max_share}


def scores_status(wh, efp: str, scorers: list[str], layer: str, first: int, last: int,
                  max_share: float = 1.0) -> tuple[bool, dict]:
    missing = wh.query(queries.RANGE_MISSING_SCORES, [scorers, efp, layer, first, last])
    explained = wh.scalar(queries.RANGE_OK_EXPLANATION_COUNT, [efp, layer, first, last])
    n, failed = wh.query(queries.RANGE_FAILED_SCORE_COUNT, [efp, layer, first, last, scorers]).row(0)
    fine = not n or failed / n <= max_share
    return missing.is_empty() and fine, {"explainer_fp": efp, "ok_explanations": explained,
                                         "missing_scores": missing.height, "failed_scores": failed,
                                         "max_share": max_share, "missing": table_md(missing.head(20).to_dicts())}


CHANCE = {"balanced_accuracy": 0.5, "auroc": 0.5, "correlation": 0.0}


def control_status(wh, efp: str, layer: str, rng: str, tolerance: float) -> tuple[bool, dict]:
    """``rng``: the partition's latent_range label, e.g. '00000-01023'."""
    rows = wh.query(queries.RANGE_SCORER_SUMMARY_ROWS, [efp, layer, rng])
    off = [r["scorer"] for r in rows.iter_rows(named=True)
           if r["metric"] in CHANCE and abs(r["median_control"] - CHANCE[r["metric"]]) > tolerance]
    table = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows.iter_rows(named=True)]
    return not off, {"explainer_fp": efp, "controlled_scorers": rows.height, "off_chance": ", ".join(off) or "none",
                     "tolerance": tolerance, "controls": table_md(table)}


def sensitivity_status(wh, efp: str, layer: str, rng: str) -> tuple[bool, dict]:
    """Fails when a scorer of the partition demonstrably ignores the explanation (reads_explanation = false)."""
    rows = wh.query(queries.RANGE_SENSITIVITY_ROWS, [efp, layer, rng])
    blind = [r["scorer"] for r in rows.iter_rows(named=True) if r["reads_explanation"] is False]
    table = [{"scorer": r["scorer"], "answers": r["items"], "changed": r["changed"],
              "share changed [95 % CI]": "–" if r["share_changed"] is None else
              f"{r['share_changed']:.1%} [{r['share_ci_low']:.1%}, {r['share_ci_high']:.1%}]",
              "reads the explanation": {True: "yes", False: "NO", None: "unclear"}[r["reads_explanation"]]}
             for r in rows.iter_rows(named=True)]
    return not blind, {"explainer_fp": efp, "checked_scorers": rows.height, "blind_scorers": ", ".join(blind) or "none",
                       "sensitivity": table_md(table),
                       "findings": dg.MetadataValue.md("\n\n".join(rows["finding"].to_list()) or "(no controlled scorer)")}


# --- the Dagster checks ------------------------------------------------------------------------------
@dg.asset_check(asset=examples, partitions_def=PARTITIONS,
                description="No corpus token is in both a train and a test window of a latent (so no shared "
                            "activation peak either), and the explainer's negatives share no window with the scorers'.")
def train_test_disjoint(context: dg.AssetCheckExecutionContext, project: ProjectResource) -> dg.AssetCheckResult:
    ctx, _, layer, first, last = _partition(context, project)
    chk = check_examples(ctx, layer, first, last)
    md = {k: chk[k] for k in ("overlapping_windows", "shared_peaks", "shared_negatives")}
    return dg.AssetCheckResult(passed=not any(md.values()), metadata=md)


@dg.asset_check(asset=examples, partitions_def=PARTITIONS,
                description="The latent never fires inside one of its non-activating windows.")
def non_activating_silent(context: dg.AssetCheckExecutionContext, project: ProjectResource) -> dg.AssetCheckResult:
    ctx, _, layer, first, last = _partition(context, project)
    chk = check_examples(ctx, layer, first, last)
    return dg.AssetCheckResult(passed=chk["firing_negatives"] == 0, metadata={"firing_negatives": chk["firing_negatives"]})


@dg.asset_check(asset=examples, partitions_def=PARTITIONS,
                description="The partition has selected latents, each with train and test windows.")
def examples_not_empty(context: dg.AssetCheckExecutionContext, project: ProjectResource) -> dg.AssetCheckResult:
    ctx, _, layer, first, last = _partition(context, project)
    passed, md = examples_status(ctx.wh, layer, first, last)
    return dg.AssetCheckResult(
        passed=passed, metadata=md,
        description=None if md["selected"] else "no latent of this partition was selected: all dead or too rare "
                                                "(lower sampler.min_examples or use a larger corpus)")


@dg.asset_check(asset=explanations, partitions_def=PARTITIONS,
                description="The active explainer has a row for every selected latent; at most failures.max_share "
                            "of them failed.")
def explanations_cover_selection(context: dg.AssetCheckExecutionContext,
                                 project: ProjectResource) -> dg.AssetCheckResult:
    ctx, cfg, layer, first, last = _partition(context, project)
    passed, md = explanations_status(ctx.wh, explainer_fp(cfg), layer, first, last, cfg.failures.max_share)
    return dg.AssetCheckResult(passed=passed, metadata=md)


@dg.asset_check(asset=scores, partitions_def=PARTITIONS,
                description="Every ok explanation of the active explainer is scored by every configured scorer; at "
                            "most failures.max_share of those scores failed.")
def scores_for_every_explanation(context: dg.AssetCheckExecutionContext,
                                 project: ProjectResource) -> dg.AssetCheckResult:
    ctx, cfg, layer, first, last = _partition(context, project)
    passed, md = scores_status(ctx.wh, explainer_fp(cfg), list(cfg.scorer.scorers), layer, first, last,
                               cfg.failures.max_share)
    return dg.AssetCheckResult(passed=passed, metadata=md)


@dg.asset_check(asset=scores, partitions_def=PARTITIONS,
                description="The random-explanation control's median is at chance for every controlled scorer "
                            "(warning: otherwise the scorer reads something other than the explanation).")
def control_at_chance(context: dg.AssetCheckExecutionContext, project: ProjectResource) -> dg.AssetCheckResult:
    ctx, cfg, layer, first, last = _partition(context, project)
    tol = cfg.scoring.control_tolerance
    passed, md = control_status(ctx.wh, explainer_fp(cfg), layer, latent_range(ctx, first, last), tol)
    return dg.AssetCheckResult(passed=passed, metadata=md, severity=dg.AssetCheckSeverity.WARN,
                               description=None if passed else f"control median off chance by more than {tol} "
                               f"for {md['off_chance']}: inspect those scorers' prompts and answer bias")


@dg.asset_check(asset=scores, partitions_def=PARTITIONS,
                description="Every controlled scorer reads the explanation: swapping it for another latent's changes "
                            "at least scoring.sensitivity_min_share of its answers (warning: otherwise its "
                            "scores say nothing about the explanation).")
def scorer_reads_explanation(context: dg.AssetCheckExecutionContext, project: ProjectResource) -> dg.AssetCheckResult:
    ctx, cfg, layer, first, last = _partition(context, project)
    passed, md = sensitivity_status(ctx.wh, explainer_fp(cfg), layer, latent_range(ctx, first, last))
    return dg.AssetCheckResult(passed=passed, metadata=md, severity=dg.AssetCheckSeverity.WARN,
                               description=None if passed else f"{md['blind_scorers']} demonstrably ignore(s) the "
                               "explanation: their answers barely change with another latent's explanation; use a "
                               "stronger scorer LLM before reading these scores as explanation quality")


CHECKS = [train_test_disjoint, non_activating_silent, examples_not_empty, explanations_cover_selection,
          scores_for_every_explanation, control_at_chance, scorer_reads_explanation]
