"""Stage intervention_scores: the intervention scorer and its random-explanation control for one partition
(runs after stages scores and scores_more, on the same explainer's ok explanations and the partition's
steering rows; the science in core.scoring.intervention).

Writes, in ONE transaction, rows of ``scores`` / ``score_items`` for scorers 'intervention' and
'intervention_control' (control = true; the donor is the same seeded derangement the other scorers' controls
use), replacing exactly those rows of the partition and explainer, the scorer's row of ``scorer_sensitivity``
(does it read the explanation: answers changed by the control's explanation), and the LLM calls in
``llm_calls``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import polars as pl

from ..fingerprint import fingerprint
from ..scoring import bootstrap, controls, sensitivity
from ..scoring.intervention import PROMPT_VERSION, InterventionJob, Pair, score_intervention
from .context import Context, explainer_spec, llm_identity
from .scores_more import _classifier_rows, _Rows, latent_range
from .steering import load_steering, steering_fp

SCORERS = ("intervention", "intervention_control")


def intervention_spec(ctx: Context, steering_fp: str) -> dict:
    s = ctx.cfg.scorer
    return {"llm": llm_identity(ctx.cfg.scorer_llm, ctx.workdir), "kind": "intervention",
            "prompt_version": PROMPT_VERSION, "steering_fp": steering_fp,
            "settings": s.model_dump(include={"examples_per_prompt", "max_tokens", "temperature", "logprobs",
                                              "constrained", "seed"})}


def intervention_current(ctx: Context, layer: str, first: int, last: int) -> bool:
    """Whether every ok explanation of ctx's explainer in the partition has its intervention score under the
    current steering and scorer settings (a re-run would only repeat it)."""
    efp = fingerprint("explainer", explainer_spec(ctx.cfg, ctx.workdir))
    sfp = fingerprint("scorer", intervention_spec(ctx, steering_fp(ctx, layer)))
    ok, scored = ctx.wh.query(
        "SELECT count(*), count(s.latent) FROM explanations e LEFT JOIN scores s ON s.layer = e.layer AND s.latent = "
        "e.latent AND s.explainer_fp = e.explainer_fp AND s.scorer = 'intervention' AND s.scorer_fp = ? WHERE "
        "e.layer = ? AND e.latent BETWEEN ? AND ? AND e.explainer_fp = ? AND e.status = 'ok'",
        [sfp, layer, first, last, efp]).row(0)
    return ok == scored


def jobs_of(layer: str, texts: dict[int, list[dict]], explanation: dict[int, str]) -> list[InterventionJob]:
    return [InterventionJob(f"{layer}/{lat}", explanation[lat],
                            [Pair(r["prompt_id"], r["prompt"], r["clean"], r["steered"]) for r in texts[lat]])
            for lat in sorted(explanation) if texts.get(lat)]


def run_intervention_scores(ctx: Context, client, layer: str, first: int, last: int,
                            explainer_fp: str | None = None) -> dict:
    cfg, x = ctx.cfg, ctx.cfg.scoring_extras
    t0 = time.perf_counter()
    efp = explainer_fp or fingerprint("explainer", explainer_spec(cfg, ctx.workdir))
    rng_label = latent_range(ctx, first, last)
    text = dict(ctx.wh.query("SELECT latent, explanation FROM explanations WHERE layer = ? AND latent BETWEEN ? "
                             "AND ? AND explainer_fp = ? AND status = 'ok' ORDER BY latent",
                             [layer, first, last, efp]).iter_rows())
    samp = ctx.wh.scalar("SELECT any_value(sampler_fp) FROM examples WHERE layer = ? AND latent BETWEEN ? AND ?",
                         [layer, first, last]) or ""
    steer, texts = load_steering(ctx, layer, first, last, with_texts=True)
    jobs = jobs_of(layer, texts, text)
    # the same derangement as the other scorers' controls (scores_more), so a latent's donor is one latent
    donor = controls.donors(sorted(text), f"{x.seed}:{layer}:{rng_label}:{efp}") \
        if x.control and "intervention" in x.control_scorers else {}
    cjobs = [InterventionJob(j.key, text[donor[int(j.key.rsplit('/', 1)[1])]], j.pairs) for j in jobs
             if int(j.key.rsplit("/", 1)[1]) in donor]
    results = asyncio.run(score_intervention(client, jobs + cjobs, cfg.scorer)) if jobs else []
    rows = _Rows(ctx, layer, efp, samp, rng_label)
    sfp = next(iter({r["steering_fp"] for r in steer.values()}), "")
    spec = intervention_spec(ctx, sfp)
    real_fp = rows.fp(spec)
    ctl_fp = rows.fp({**spec, "control": {"kind": "derangement", "seed": x.seed}})
    for i, res in enumerate(results):
        is_control = i >= len(jobs)
        _classifier_rows(rows, SCORERS[is_control], ctl_fp if is_control else real_fp, res, x, control=is_control)
    real = {r["latent"]: r for r in rows.scores if not r["control"]}
    ctl = {r["latent"]: r["value"] for r in rows.scores if r["control"] and r["status"] == "ok"}
    lats = [lat for lat, r in real.items() if r["status"] == "ok"]
    summary = bootstrap.summarize([real[lat]["value"] for lat in lats], [ctl.get(lat) for lat in lats] if ctl else None)
    summary.update(latents_undefined=sum(r["status"] == "undefined" for r in real.values()),
                   latents_failed=sum(r["status"] == "failed" for r in real.values()))
    sens = None
    if ctl:  # does the scorer read the explanation: answers that change with the control's explanation
        key = lambda i: (i["latent"], i["example_id"], i["truth"])  # noqa: E731
        answers = {name: {key(i): i["prediction"] for i in rows.items if i["scorer"] == name} for name in SCORERS}
        sens = sensitivity.assess("intervention", sensitivity.changed_per_latent(*answers.values()),
                                  x.sensitivity_min_share, x.bootstrap_samples, f"{x.seed}:{layer}:{first}:intervention",
                                  x.ci_level, summary)
    with ctx.wh.write() as con:
        for table in ("scores", "score_items"):
            con.execute(f"DELETE FROM {table} WHERE layer = ? AND latent BETWEEN ? AND ? AND explainer_fp = ? "
                        "AND scorer IN (SELECT unnest(?))", [layer, first, last, efp, list(SCORERS)])
        rows.insert(con, ctx.wh)
        con.execute("DELETE FROM scorer_sensitivity WHERE layer = ? AND latent_range = ? AND explainer_fp = ? AND "
                    "scorer = 'intervention'", [layer, rng_label, efp])
        if sens is not None:
            ctx.wh.insert(con, "scorer_sensitivity", pl.DataFrame([{
                "layer": layer, "latent_range": rng_label, "explainer_fp": efp, "scorer": sens.scorer,
                "latents": sens.latents, "items": sens.items, "changed": sens.changed, "share_changed": sens.share,
                "share_ci_low": sens.share_low, "share_ci_high": sens.share_high, "min_share": sens.min_share,
                "reads_explanation": sens.reads_explanation, "finding": sens.finding}], schema_overrides={
                "share_changed": pl.Float64, "share_ci_low": pl.Float64, "share_ci_high": pl.Float64,
                "reads_explanation": pl.Boolean}))
    changed = [r["changed"] / r["n_prompts"] for r in steer.values() if r["latent"] in text and r["n_prompts"]]
    return {"explainer_fp": efp, "latent_range": rng_label, "latents": len(jobs), "control_pairs": len(cjobs),
            "summary": {"intervention": {"metric": "balanced_accuracy", **summary}} if real else {},
            "control_values": {"intervention": list(ctl.values())},
            "sensitivity": [dataclasses.asdict(sens)] if sens is not None else [],
            "changed_share": round(sum(changed) / len(changed), 3) if changed else None,
            "seconds": round(time.perf_counter() - t0, 2), "llm_calls": len(rows.ledger),
            "prompt_tokens": sum(r["prompt_tokens"] for r in rows.ledger),
            "completion_tokens": sum(r["completion_tokens"] for r in rows.ledger)}

def merge_intervention(more: dict, inter: dict) -> None:
    """Fold this stage's result into stage scores_more's (one metadata table and summary per partition)."""
    more["summary"].update(inter["summary"])
    more["control_values"].update(inter["control_values"])
    more["sensitivity"] = more.get("sensitivity", []) + inter["sensitivity"]
    more["seconds"]["intervention"] = inter["seconds"]
    for k in ("llm_calls", "prompt_tokens", "completion_tokens"):
        more[k] = more.get(k, 0) + inter[k]
    more["intervention_changed_share"] = inter["changed_share"]
