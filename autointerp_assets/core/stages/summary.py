"""The per-partition summary users read after a run."""

from __future__ import annotations

import json

import polars as pl

from ..identity import engine_label, explainer_fp
from ..scoring.bootstrap import median_ci
from ..storage import queries
from .context import Context


def partition_summary(ctx: Context, current_fp: str | None = None) -> pl.DataFrame:
    """One row per (layer, latent range, explainer): the explainer's engine (with its dtype), latents scored, median
    balanced accuracies, and the detection control: its median and the median paired difference real - control
    [95 % CI] (view scorer_summary), so that a reader sees at once whether the medians are above chance; with the
    intervention scorer, its median and its difference to the control likewise.
    ``current_fp``: the active explainer's fingerprint; a column ``current`` marks its rows (an earlier
    explainer's row is never mistaken for this run's)."""
    cfg = ctx.cfg
    ranges = [(k, a, b) for k, (a, b) in zip(cfg.latent_keys(), cfg.latents.ranges())]
    frame = ctx.wh.query(queries.PARTITION_SUMMARY, [[k for k, _, _ in ranges], [a for _, a, _ in ranges],
                                                     [b for _, _, b in ranges]])
    # the baseline explainers (no LLM) are compared in explainer_leaderboard / explainer_pairs, not listed here
    frame = frame.filter(~pl.col("explainer_fp").is_in(list(_baseline_fps(ctx))))
    if frame["median_intervention_bacc"].null_count() == frame.height:  # no intervention scorer configured
        frame = frame.drop("median_intervention_bacc", "intervention_minus_control")
    engine = pl.col("explainer_fp").replace_strict(explainer_engines(ctx), default=None, return_dtype=pl.Utf8)
    cols = frame.columns
    at = cols.index("explainer_fp") + 1
    frame = frame.with_columns(explainer_engine=engine).select(*cols[:at], "explainer_engine", *cols[at:])
    if current_fp is None:
        return frame
    return frame.with_columns(current=pl.col("explainer_fp") == current_fp).sort(
        ["layer", "latents", "current"], descending=[False, False, True])


def _baseline_fps(ctx: Context) -> set[str]:
    from .baseline_explanations import baseline_contexts

    return {explainer_fp(b.cfg) for b in baseline_contexts(ctx)}


def explainer_engines(ctx: Context) -> dict[str, str]:
    """Explainer fingerprint -> its engine in words (engine, model, dtype), from the stored specs: runs made
    on machines that resolve ``dtype: auto`` differently are told apart at a glance. An explainer kind other
    than the default is named after it (e.g. "vllm smollm2 bfloat16 · token_change")."""
    specs = ctx.wh.query(queries.EXPLAINER_SPECS).iter_rows()
    out = {}
    for fp, spec in specs:
        spec = json.loads(spec)
        kind = spec.get("settings", {}).get("kind", "default")
        out[fp] = engine_label(spec["llm"]) + ("" if kind == "default" else f" · {kind}") if "llm" in spec \
            else f"baseline {spec.get('kind')} (no LLM)"
    return out


def scorer_findings(ctx: Context) -> pl.DataFrame:
    """One row per (layer, latent range, explainer, scorer with a control): does the scorer read the explanation
    (view scorer_report), with the finding in words."""
    return ctx.wh.query(queries.SENSITIVITY_FINDINGS)


def findings_lines(ctx: Context) -> list[str]:
    """The findings as lines a person reads after a run (the blind scorers first)."""
    frame = scorer_findings(ctx)
    rows = sorted(frame.iter_rows(named=True), key=lambda r: (r["reads_explanation"] is not False, r["layer"],
                                                                r["latent_range"], r["scorer"]))
    baselines = _baseline_fps(ctx)
    return [f"[{r['layer']} {r['latent_range']} {r['explainer_fp'][-8:]}] {r['finding']}" for r in rows
            if r["explainer_fp"] not in baselines]


def baseline_comparison(ctx: Context, layer: str, first: int, last: int) -> list[dict]:
    """Per scorer and baseline: the active explainer vs the baseline on the latents both explained, median of
    each, median paired difference (explainer - baseline) with its 95 % interval, and who wins how often."""
    from .baseline_explanations import baseline_contexts

    efp = explainer_fp(ctx.cfg)
    names = {explainer_fp(b.cfg): b.cfg.explainer.kind for b in baseline_contexts(ctx)}
    frame = ctx.wh.query(queries.RANGE_EXPLAINER_VALUES, [layer, first, last, [efp, *names]])
    out = []
    for (scorer,), grp in frame.group_by(["scorer"], maintain_order=True):
        mine = {r["latent"]: r["value"] for r in grp.filter(pl.col("explainer_fp") == efp).iter_rows(named=True)}
        for bfp, kind in names.items():
            theirs = {r["latent"]: r["value"] for r in grp.filter(pl.col("explainer_fp") == bfp).iter_rows(named=True)}
            both = sorted(set(mine) & set(theirs))
            if not both:
                continue
            d = [mine[k] - theirs[k] for k in both]
            lo, hi = median_ci(d)
            out.append({"scorer": scorer, "metric": grp["metric"][0], "baseline": kind, "latents": len(both),
                        "explainer": round(float(pl.Series([mine[k] for k in both]).median()), 3),
                        "baseline median": round(float(pl.Series([theirs[k] for k in both]).median()), 3),
                        "explainer - baseline [95 % CI]": f"{pl.Series(d).median():+.3f} [{lo:+.3f}, {hi:+.3f}]",
                        "explainer wins": sum(x > 0 for x in d), "baseline wins": sum(x < 0 for x in d)})
    return sorted(out, key=lambda r: (r["scorer"], r["baseline"]))


def companion_controls(ctx: Context, layer: str, first: int, last: int) -> list[dict]:
    """Per explainer of the partition (the active one, then its companions: baselines and output-centric) and
    scorer: the median of the primary metric, the random-explanation control's median and the median paired
    difference with its 95 % interval (view scorer_summary; baselines run without the control)."""
    from .baseline_explanations import baseline_contexts
    from .score_rows import latent_range

    kinds = {explainer_fp(ctx.cfg): ctx.cfg.explainer.kind}
    kinds.update({explainer_fp(b.cfg): b.cfg.explainer.kind for b in baseline_contexts(ctx)})
    frame = ctx.wh.query(queries.RANGE_SCORER_SUMMARY, [layer, latent_range(ctx, first, last), list(kinds)])
    order = {fp: i for i, fp in enumerate(kinds)}

    def f(v, sign=""):
        return "–" if v is None else f"{v:{sign}.3f}"
    rows = sorted(frame.iter_rows(named=True), key=lambda r: (order[r["explainer_fp"]], r["scorer"]))
    return [{"explainer": kinds[r["explainer_fp"]], "scorer": r["scorer"], "metric": r["metric"],
             "latents": r["latents"], "median": f(r["median"]), "median control": f(r["median_control"]),
             "difference [95 % CI]": "–" if r["median_difference"] is None else
             f"{f(r['median_difference'], '+')} [{f(r['difference_ci_low'], '+')}, {f(r['difference_ci_high'], '+')}]"}
            for r in rows]


def calibration_lines(ctx: Context) -> list[str]:
    """The latest calibration of the active explainer, in words: per scorer its power, per explainer its recovery."""
    efp = explainer_fp(ctx.cfg)
    cfp = ctx.wh.scalar(queries.LATEST_CALIBRATION_OF, [efp])
    if cfp is None:
        return []
    out = []
    for r in ctx.wh.query(queries.CALIBRATION_POWER_OF, [cfp, efp]).iter_rows(named=True):
        if r["gold_wins"] is None:
            continue
        out.append(f"{r['scorer']}: the gold explanation beats a wrong one on {r['gold_wins']:.0%} of {r['latents']} "
                   f"planted latents (gold - control median {r['power_median_difference']:+.3f} "
                   f"[{r['power_ci_low']:+.3f}, {r['power_ci_high']:+.3f}]; gold {r['median_gold']:.3f}, control "
                   f"{r['median_control']:.3f}" + ("" if r["median_explainer"] is None else
                                                   f", the explainer's own {r['median_explainer']:.3f}") + ")")
    for r in ctx.wh.query(queries.CALIBRATION_RECOVERY_OF, [cfp, efp]).iter_rows(named=True):
        out.append(f"recovery, explainer {r['explainer']}: its explanation is nearest its own planted latent's gold "
                   f"for {r['recovery']:.0%} of {r['latents']} (chance {r['chance']:.0%})")
    return out
