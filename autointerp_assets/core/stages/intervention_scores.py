"""Stage intervention_scores: the intervention scorer and its random-explanation control for one partition
(stage scores' third pass, after :mod:`.classifier_scores` and :mod:`.scorers`, on the same explainer's ok
explanations and the partition's steering rows; the science in core.scoring.intervention).

Writes, in ONE transaction, rows of ``scores`` / ``score_items`` for scorers 'intervention' and
'intervention_control' (control = true; the donor is the same seeded derangement the other scorers' controls
use) -- only for the latents without a done score by the current scorer fingerprint (all with ``force``),
merged monotonically (:mod:`.incremental`: a failure never replaces an ok row) --, the scorer's row of
``scorer_sensitivity`` (does it read the explanation: answers changed by the control's explanation, over the
partition as it stands) and the LLM calls (recorded before they are sent: :mod:`..llm.ledger`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from .. import identity
from ..scoring import bootstrap, controls
from ..scoring.intervention import PROMPT_VERSION, InterventionJob, Pair, score_intervention
from ..storage import queries
from .context import Context
from .explanations import partition_label
from .incremental import done_scores, failed_units, verdict
from .score_rows import latent_of, start_scoring, write_sensitivity
from .scorers import sensitivities
from .steering import load_steering, steering_fp

SCORERS = ("intervention", "intervention_control")


def intervention_spec(ctx: Context, steering_fp: str) -> dict:
    return identity.intervention_spec(ctx.cfg, ctx.workdir, PROMPT_VERSION, steering_fp)


def intervention_current(ctx: Context, layer: str, first: int, last: int) -> bool:
    """Whether every ok explanation of ctx's explainer in the partition has its intervention score under the
    current steering and scorer settings (a re-run would only repeat it)."""
    efp = identity.explainer_fp(ctx.cfg, ctx.workdir)
    sfp = identity.scorer_fp(intervention_spec(ctx, steering_fp(ctx, layer)))
    ok, scored = ctx.wh.query(queries.RANGE_EXPLANATIONS_WITH_SCORE, [sfp, layer, first, last, efp]).row(0)
    return ok == scored


def jobs_of(layer: str, texts: dict[int, list[dict]], explanation: dict[int, str]) -> list[InterventionJob]:
    return [InterventionJob(f"{layer}/{lat}", explanation[lat],
                            [Pair(r["prompt_id"], r["prompt"], r["clean"], r["steered"]) for r in texts[lat]])
            for lat in sorted(explanation) if texts.get(lat)]


def run_intervention_scores(ctx: Context, client, layer: str, first: int, last: int,
                            explainer_fp: str | None = None, force: bool = False) -> dict:
    cfg, x = ctx.cfg, ctx.cfg.scoring
    t0 = time.perf_counter()
    setup = start_scoring(ctx, client, layer, first, last, explainer_fp)
    efp, ledger, client, rng_label = setup.efp, setup.ledger, setup.client, setup.rng_label
    text = dict(setup.explanations.iter_rows())
    steer, texts = load_steering(ctx, layer, first, last, with_texts=True)
    rows = setup.rows(ctx, layer)
    spec = intervention_spec(ctx, next(iter({r["steering_fp"] for r in steer.values()}), ""))
    real_fp = rows.fp(spec)
    ctl_fp = rows.fp(identity.control_spec(spec, x.seed))
    done = set() if force else done_scores(ctx.wh, layer, first, last, efp,
                                           {SCORERS[0]: real_fp, SCORERS[1]: ctl_fp})
    every = jobs_of(layer, texts, text)
    jobs = [j for j in every if (latent_of(j.key), SCORERS[0]) not in done]
    # the same derangement as the other scorers' controls (.scorers), so a latent's donor is one latent
    donor = controls.donors(sorted(text), f"{x.seed}:{layer}:{rng_label}:{efp}") \
        if x.control and "intervention" in x.control_scorers else {}
    cjobs = [InterventionJob(j.key, text[donor[latent_of(j.key)]], j.pairs) for j in every
             if latent_of(j.key) in donor and (latent_of(j.key), SCORERS[1]) not in done]
    results = asyncio.run(score_intervention(client, jobs + cjobs, cfg.scorer)) if jobs + cjobs else []
    for i, res in enumerate(results):
        is_control = i >= len(jobs)
        rows.add_classifier(SCORERS[is_control], ctl_fp if is_control else real_fp, res, x, control=is_control)
    latents = [latent_of(j.key) for j in every]
    for attempt in ctx.wh.attempts():
        with attempt as con:
            kept = rows.merge(con)
            sens = sensitivities(con, layer, first, last, efp, ["intervention"], x, values=())
            write_sensitivity(con, ctx.wh, layer, rng_label, efp, ["intervention"], sens)
            ledger.complete(con, rows.ledger)
            failures = failed_units(con, "scores", layer, efp, latents, list(SCORERS) if donor else [SCORERS[0]])
    # the partition as it now stands (this run's rows merged with earlier ones)
    now = ctx.wh.query(queries.RANGE_INTERVENTION_SCORES, [layer, first, last, efp, list(SCORERS)])
    real = {lat: (st, v) for lat, name, st, v in now.iter_rows() if name == SCORERS[0]}
    ctl = {lat: v for lat, name, st, v in now.iter_rows() if name == SCORERS[1] and st == "ok"}
    lats = sorted(lat for lat, (st, _) in real.items() if st == "ok")
    summary = bootstrap.summarize([real[lat][1] for lat in lats], [ctl.get(lat) for lat in lats] if ctl else None)
    summary.update(latents_undefined=sum(st == "undefined" for st, _ in real.values()),
                   latents_failed=sum(st == "failed" for st, _ in real.values()))
    changed = [r["changed"] / r["n_prompts"] for r in steer.values() if r["latent"] in text and r["n_prompts"]]
    out = {"explainer_fp": efp, "latent_range": rng_label, "latents": len(every), "latents_sent": len(jobs),
           "control_pairs": len(cjobs), "pairs_already_done": len(done), "failures_kept_beside_ok": kept,
           "summary": {"intervention": {"metric": "balanced_accuracy", **summary}} if real else {},
           "control_values": {"intervention": list(ctl.values())},
           "sensitivity": [dataclasses.asdict(v) for v in sens],
           "changed_share": round(sum(changed) / len(changed), 3) if changed else None,
           "seconds": round(time.perf_counter() - t0, 2), "llm_calls": len(rows.ledger),
           "prompt_tokens": sum(r["prompt_tokens"] for r in rows.ledger),
           "completion_tokens": sum(r["completion_tokens"] for r in rows.ledger)}
    verdict("scores (intervention)", partition_label(layer, first, last), sent=len(rows.scores),
            server_failures=rows.server_failures(),
            units=len(latents) * (2 if donor else 1), failures=failures, max_share=cfg.failures.max_share,
            fatal=rows.fatal, unit="latent x scorer scores", summary=out)
    return out
