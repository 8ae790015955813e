"""Stage scores, first pass: the yes/no scorers (``scorer.scorers``: detection, fuzzing) of every ok
explanation; per-latent metrics (their intervals and the other scorers: :mod:`.scorers`).

Incremental and monotone (:mod:`.incremental`): only (latent, scorer) pairs without an ok score at least
as new as their ok explanation are sent (all of them with ``force``); a failure never replaces an ok score.
Every kind x latent x batch goes to the engine in ONE ``generate`` call. A malformed answer fails only its
batch; a latent whose batches all fail gets status 'failed', one with no answered example of one class
(balanced accuracy needs both) 'undefined', each with status_reason saying why. Requests go through the write-ahead ledger; the budget
works as in the explanations stage; too many failures or a fatal server error fail the step after the commit.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import polars as pl

from ..identity import engine_label, scorer_fp, scorer_spec
from ..llm import accounting
from ..scoring import classifier
from ..storage import queries
from .context import Context, rate
from .examples import load_examples
from .explanations import partition_label
from .incremental import done_scores, failed_units, verdict
from .llm_runs import BUDGET_EXCEEDED, budget_stop
from .score_rows import latent_of, start_scoring


class ClassifierPass:
    """One partition's yes/no scoring: the explanations to score are added (:meth:`add`), admitted by the budget
    and recorded in the ledger (:meth:`admit`), sent (:meth:`send`), and everything is merged in one transaction
    at the end (:meth:`finish`). :func:`run_classifier_scores` does each step once for the whole partition; the
    pipelined stage (:mod:`.explain_and_score`) adds and sends latent by latent as their explanations land."""

    def __init__(self, ctx: Context, client, layer: str, first: int, last: int, explainer_fp: str | None = None,
                 force: bool = False):
        cfg = ctx.cfg
        self.ctx, self.client, self.layer, self.first, self.last, self.force = ctx, client, layer, first, last, force
        self.setup = start_scoring(ctx, client, layer, first, last, explainer_fp)  # its client unused: admit first
        self.efp, self.ledger = self.setup.efp, self.setup.ledger
        self.exs = load_examples(ctx, layer, first, last, ["test", "non_activating"])
        self.kinds = list(cfg.scorer.scorers)
        self.specs = {k: scorer_spec(cfg, ctx.workdir, k) for k in self.kinds}
        self.sfps = {k: scorer_fp(self.specs[k]) for k in self.kinds}
        self.done = set() if force else done_scores(ctx.wh, layer, first, last, self.efp, self.sfps)
        self.jobs: dict[int, classifier.ScoreJob] = {}
        self.todo: dict[int, list[str]] = {}                 # latent -> kinds to send
        self.batches: dict[tuple[int, str], list] = {}       # (latent, kind) -> its batches
        self.latents: list[int] = []                         # the units offered to the budget, in order
        self.refused: list[int] = []                         # of those, the ones it kept from being sent
        self.results: dict[tuple[int, str], classifier.ScoreResult] = {}
        self.rows = self.setup.rows(ctx, layer, labelled=False)  # stage scores' next pass sets latent_range
        for k in self.kinds:
            self.rows.fp(self.specs[k])
        self.secs = 0.0

    def add(self, explanations) -> list[int]:
        """Jobs of (latent, explanation) pairs; the latents with something to send, in order."""
        scfg, out = self.ctx.cfg.scorer, []
        for lat, text in explanations:
            job = self.jobs[lat] = classifier.ScoreJob(f"{self.layer}/{lat}", text,
                                                       self.exs.get(lat, {}).get("test", []),
                                                       self.exs.get(lat, {}).get("non_activating", []))
            kinds = [k for k in self.kinds if (lat, k) not in self.done]
            if kinds:
                self.todo[lat] = kinds
                for k in kinds:
                    self.batches[(lat, k)] = classifier.build_scorer_batches(k, text, job.test, job.non_activating,
                                                                             scfg, job.key)
                out.append(lat)
        return out

    def admit(self, latents: list[int]) -> list[int]:
        """The leading ``latents`` that fit the budget, recorded as sent (their requests get call ids); once the
        budget refused a latent, every later one is refused too (latents are admitted in order)."""
        if self.refused:
            self.latents += latents
            self.refused += latents
            return []
        units = [[(b, {"latent": lat, "scorer": k, "fingerprint": self.sfps[k], "batch_index": i})
                  for k in self.todo[lat] for i, b in enumerate(self.batches[(lat, k)])] for lat in latents]
        n, admitted = self.ledger.admit([[(b.request, keys) for b, keys in u] for u in units])
        for u, reqs in zip(units, admitted):
            for (batch, _), req in zip(u, reqs):
                batch.request = req  # now carrying its ledger row's call id
        self.latents += latents
        self.refused += latents[n:]
        return latents[:n]

    async def send(self, latents: list[int]) -> None:
        """Every kind's batches of admitted ``latents`` in one generate call."""
        if not latents:
            return
        jobs = {k: [self.jobs[lat] for lat in latents if k in self.todo[lat]] for k in self.kinds}
        per = {k: [self.batches[(latent_of(j.key), k)] for j in js] for k, js in jobs.items()}
        t0 = time.perf_counter()
        results = await classifier.send_all(self.client, jobs, per)
        self.secs += time.perf_counter() - t0
        for k, res in results.items():  # rows as the answers land (pipelined: while others are in flight)
            for job, r in zip(jobs[k], res):
                lat = latent_of(job.key)
                self.results[(lat, k)] = r
                for b, resp in enumerate(r.responses):
                    resp.call_id = self.batches[(lat, k)][b].request.call_id
                self.rows.add_classifier(k, self.sfps[k], r, self.ctx.cfg.scoring, control=False, intervals=False)

    def finish(self) -> dict:
        """Rows of every added latent merged with the ledger in one transaction; the pass's result (or
        StageFailed / BudgetExceeded after the commit)."""
        ctx, cfg, layer, kinds, efp, rows = self.ctx, self.ctx.cfg, self.layer, self.kinds, self.efp, self.rows
        for lat in self.refused:
            for kind in self.todo[lat]:
                rows.not_sent(kind, self.sfps[kind], lat, BUDGET_EXCEEDED)
        for attempt in ctx.wh.attempts():
            with attempt as con:
                kept = rows.merge(con)
                self.ledger.complete(con, rows.ledger)
                failures = failed_units(con, "scores", layer, efp, list(self.jobs), kinds)
        # the partition as it now stands (this run's rows merged with earlier ones), for the metadata
        now = ctx.wh.query(queries.RANGE_CLASSIFIER_SCORES, [layer, self.first, self.last, efp, kinds])
        summary, baccs = {}, {}
        for kind in kinds:
            mine = now.filter(pl.col("scorer") == kind)
            ok = mine.filter(pl.col("status") == "ok")
            vals, aucs = ok["balanced_accuracy"].drop_nulls().to_list(), mine["auroc"].drop_nulls().to_list()
            baccs[kind] = vals
            summary[kind] = {"latents_scored": len(vals),
                             "latents_failed": mine.filter(pl.col("status") == "failed").height,
                             "median_balanced_accuracy": float(np.median(vals)) if vals else None,
                             "median_auroc": float(np.median(aucs)) if aucs else None,
                             "failed_batches": int(mine["n_failed_batches"].sum() or 0)}
        n_sent = len(self.latents) - len(self.refused)
        sent_rows = [r for r in rows.scores if r["status"] != BUDGET_EXCEEDED]
        out = {"explainer_fp": efp, "scorer_engine": engine_label(self.specs[kinds[0]]["llm"]),
               "latents": len(self.jobs), "latents_sent": n_sent, "resumed": bool(self.done), "forced": self.force,
               "scores_already_done": len(self.done), "failures_kept_beside_ok": kept, "seconds": round(self.secs, 2),
               "latents_per_s": rate(n_sent, self.secs), "scorers": summary, "balanced_accuracies": baccs,
               **accounting.totals(rows.ledger)}
        fatal = next((r.error for res in self.results.values() for r in res.responses if r.fatal), None)
        verdict("scores", partition_label(layer, self.first, self.last), sent=len(sent_rows),
                server_failures=rows.server_failures(), units=len(self.jobs) * len(kinds), failures=failures,
                max_share=cfg.failures.max_share, fatal=fatal, unit="latent x scorer scores", summary=out)
        if self.refused:
            raise budget_stop(len(self.refused), len(self.latents), "scored", layer, self.first, self.last, out)
        return out


def run_classifier_scores(ctx: Context, client, layer: str, first: int, last: int,
                          explainer_fp: str | None = None, force: bool = False) -> dict:
    """``explainer_fp``: score another explainer's stored explanations (default: the configured explainer's).
    ``force``: re-send every pair, not only those without a current ok score."""
    with ctx.wh.session():  # one open database for the set-up's reads and the ledger's write
        p = ClassifierPass(ctx, client, layer, first, last, explainer_fp, force)
        sending = p.admit(p.add(p.setup.explanations.iter_rows()))
    if sending:
        asyncio.run(p.send(sending))
    with ctx.wh.session():
        return p.finish()
