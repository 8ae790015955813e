"""The one row builder of stage scores: every scorer's per-latent rows of ``scores``, its per-item rows of
``score_items`` and its LLM calls' ledger rows, collected for one partition and merged in the caller's
transaction (monotone: :func:`..storage.monotone.merge`, a failure never replaces a done row)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .. import identity
from ..llm import accounting
from ..llm.ledger import Ledger
from ..scoring import bootstrap, classifier, metrics
from ..storage import queries
from ..storage.monotone import merge
from .context import Context
from .examples import current_explanations
from .llm_runs import prompt_counter

KEY = ("layer", "latent", "explainer_fp", "scorer")
# each scorer's primary metric: the ``value`` of its rows
PRIMARY = {"detection": "balanced_accuracy", "fuzzing": "balanced_accuracy", "fuzzing_active": "balanced_accuracy",
           "simulation": "correlation", "embedding": "auroc", "surprisal": "auroc", "intruder": "accuracy",
           "intervention": "balanced_accuracy"}
F64 = ("balanced_accuracy", "accuracy", "precision", "recall", "f1", "auroc", "latency_s", "cost_usd", "value",
       "ci_low", "ci_high", "auroc_ci_low", "auroc_ci_high")
NOT_SENT = "not sent: the budget would have been exceeded"


def latent_range(ctx: Context, first: int, last: int) -> str:
    """The partition's label in score rows, e.g. '00000-01023'."""
    width = max(5, len(str(ctx.cfg.latents.stop - 1)))
    return f"{first:0{width}d}-{last:0{width}d}"


def latent_of(key: str) -> int:
    """The latent of a job key '<layer>/<latent>'."""
    return int(key.rsplit("/", 1)[1])


@dataclass
class ScoringRun:
    """What a scoring pass over one partition starts from: the explainer scored, the ledger (and the client
    that records every request before sending it), the partition's label, the explanations and their sampler."""
    efp: str
    ledger: Ledger
    client: object
    rng_label: str
    explanations: pl.DataFrame  # (latent, explanation): made from the partition's current examples only
    sampler_fp: str

    def rows(self, ctx: Context, layer: str, labelled: bool = True) -> "ScoreRows":
        """The pass's row builder; ``labelled=False``: rows without the partition label (a later pass sets it)."""
        return ScoreRows(ctx, layer, self.efp, self.sampler_fp, self.rng_label if labelled else None,
                         self.ledger.run_id)


def start_scoring(ctx: Context, client, layer: str, first: int, last: int, explainer_fp: str | None) -> ScoringRun:
    """``explainer_fp``: another explainer's stored explanations (default: the configured explainer's)."""
    cfg = ctx.cfg
    efp = explainer_fp or identity.explainer_fp(cfg, ctx.workdir)
    ledger = Ledger(ctx.wh, cfg.scorer_llm, cfg.budget, layer=layer, stage="scores", role="scorer", explainer_fp=efp,
                    count=prompt_counter(cfg.scorer_llm, ctx.workdir))
    expl, samp = current_explanations(ctx, layer, first, last, efp)
    return ScoringRun(efp, ledger, ledger.client(client), latent_range(ctx, first, last), expl, samp)


class ScoreRows:
    """Collects one partition's score rows, item rows and ledger rows (and the scorer fingerprints they name)."""

    def __init__(self, ctx: Context, layer: str, efp: str, sampler_fp: str, rng: str | None, run_id: str):
        """``rng``: the partition's label written on every row (None: left for a later step to set)."""
        self.ctx, self.layer, self.efp, self.samp, self.rng = ctx, layer, efp, sampler_fp, rng
        self.scores: list[dict] = []
        self.items: list[dict] = []
        self.ledger: list[dict] = []
        self.fps: dict[str, tuple[str, dict]] = {}
        self.run_id = run_id
        self.fatal: str | None = None  # a fatal server error met by one of the requests

    def fp(self, spec: dict) -> str:
        """The scorer fingerprint of ``spec``, recorded with the rows."""
        f = identity.scorer_fp(spec)
        self.fps[f] = ("scorer", spec)
        return f

    def add(self, scorer: str, sfp: str, latent: int, *, value, ci, n: int, n_failed: int, control: bool,
            auroc=None, auroc_ci=(None, None), accuracy=None, balanced=None, n_batches: int = 0,
            failures=(), responses=(), extra: dict | None = None, counts: dict | None = None) -> None:
        """One latent's row. ``counts``: n_pos / n_neg of the scored items where the metric needs both classes
        (says why it is undefined when it is)."""
        llm = self.ctx.cfg.scorer_llm
        self.fatal = self.fatal or next((r.error for r in responses if r.fatal), None)
        server = any(r.transient for r in responses)
        failures = list(failures)
        calls = [accounting.call_row(llm, r, run_id=self.run_id, layer=self.layer, latent=latent, stage="scores",
                                     role="scorer", explainer_fp=self.efp, fingerprint=sfp, scorer=scorer,
                                     batch_index=b) for b, r in enumerate(responses)]
        self.ledger += calls
        if any(r.fatal for r in responses):  # the stage stops; nothing is recorded for this latent
            return
        base = PRIMARY[scorer.removesuffix("_control")]
        status, reason = metrics.score_status({"n": n, "n_failed": n_failed, **(counts or {})}, base, value)
        self.scores.append({
            "layer": self.layer, "latent": latent, "explainer_fp": self.efp, "scorer": scorer, "scorer_fp": sfp,
            "sampler_fp": self.samp, "status": status, "status_reason": reason, "n": n, "n_failed": n_failed,
            "balanced_accuracy": balanced, "accuracy": accuracy, "precision": None, "recall": None, "f1": None,
            "auroc": auroc, "n_batches": n_batches, "n_failed_batches": len(failures),
            "failure_reasons": [str(f)[:300] for f in failures],
            "prompt_tokens": sum(r.prompt_tokens for r in responses),
            "completion_tokens": sum(r.completion_tokens for r in responses),
            "latency_s": float(sum(r.latency_s for r in responses)), "cost_usd": float(sum(c["cost_usd"] for c in calls)),
            "control": control, "metric": base, "value": value, "ci_low": ci[0], "ci_high": ci[1],
            "auroc_ci_low": auroc_ci[0], "auroc_ci_high": auroc_ci[1], "latent_range": self.rng,
            "_reason": None if status == "ok" else (reason or (str(failures[0])[:300] if failures else status)),
            "_server": server,
            **(extra or {})})

    def not_sent(self, scorer: str, sfp: str, latent: int, status: str) -> None:
        """The row of a latent the budget kept from being sent (``status``: budget_exceeded)."""
        self.scores.append({
            "layer": self.layer, "latent": latent, "explainer_fp": self.efp, "scorer": scorer, "scorer_fp": sfp,
            "sampler_fp": self.samp, "status": status, "status_reason": NOT_SENT, "n": 0, "n_failed": 0,
            "balanced_accuracy": None, "accuracy": None, "precision": None, "recall": None, "f1": None,
            "auroc": None, "n_batches": 0, "n_failed_batches": 0, "failure_reasons": [NOT_SENT],
            "prompt_tokens": 0, "completion_tokens": 0, "latency_s": 0.0, "cost_usd": 0.0, "control": False,
            "metric": PRIMARY[scorer.removesuffix("_control")], "value": None, "ci_low": None, "ci_high": None, "auroc_ci_low": None,
            "auroc_ci_high": None, "latent_range": self.rng, "_reason": NOT_SENT, "_server": False})

    def item(self, scorer: str, sfp: str, latent: int, example_id: int, quantile: int, activating: bool,
             truth: bool, prediction, probability=None, value=None, batch_index: int = 0) -> None:
        self.items.append({"layer": self.layer, "latent": latent, "explainer_fp": self.efp, "scorer": scorer,
                           "scorer_fp": sfp, "example_id": example_id, "batch_index": batch_index,
                           "quantile": quantile, "activating": activating, "truth": truth, "prediction": prediction,
                           "probability": probability, "value": value})

    def add_classifier(self, name: str, sfp: str, res: classifier.ScoreResult, x, control: bool,
                   intervals: bool = True) -> dict | None:
        """A yes/no scorer's latent (detection, fuzzing, intervention, their controls): metrics, and with
        ``intervals`` their bootstrap intervals; its items. Returns the metrics (None: a fatal error)."""
        lat = latent_of(res.key)
        m = metrics.classification_metrics([i.truth for i in res.items], [i.prediction for i in res.items],
                                           [i.probability for i in res.items])
        ci, auci = (None, None), (None, None)
        if intervals:
            ci, auci, _ = classifier_cis([{"truth": i.truth, "prediction": i.prediction, "probability": i.probability,
                                           "key": f"{res.key}:{name}", "batch_index": i.batch_index}
                                          for i in res.items], x)
        n_rows = len(self.scores)
        self.add(name, sfp, lat, value=m["balanced_accuracy"], ci=ci, n=m["n"], n_failed=m["n_failed"],
                 control=control, auroc=m["auroc"], auroc_ci=auci, accuracy=m["accuracy"],
                 balanced=m["balanced_accuracy"], n_batches=res.n_batches, failures=res.failure_reasons,
                 responses=res.responses, extra={"precision": m["precision"], "recall": m["recall"], "f1": m["f1"]},
                 counts={"n_pos": m["n_pos"], "n_neg": m["n_neg"]})
        if len(self.scores) == n_rows:  # fatal: nothing recorded for this latent
            return None
        for i in res.items:
            self.item(name, sfp, lat, i.example_id, i.quantile, i.activating, i.truth, i.prediction, i.probability,
                      batch_index=i.batch_index)
        return m

    def merge(self, con) -> int:
        """Inside the caller's transaction: record the scorer fingerprints and merge the score and item rows
        monotonically; how many failures were kept beside a done row."""
        for f, (kind, spec) in self.fps.items():
            self.ctx.wh.record_fingerprint(con, f, kind, spec)
        items = pl.DataFrame(self.items, schema_overrides={"probability": pl.Float64, "prediction": pl.Boolean,
                                                           "value": pl.Float64}) if self.items else pl.DataFrame()
        frame = pl.DataFrame(self.scores, schema_overrides={k: pl.Float64 for k in F64} | {
            "failure_reasons": pl.List(pl.Utf8), "control": pl.Boolean, "status_reason": pl.Utf8, "_reason": pl.Utf8,
            "_server": pl.Boolean, "metric": pl.Utf8, "latent_range": pl.Utf8}) if self.scores else pl.DataFrame()
        return merge(con, self.ctx.wh, "scores", frame, KEY, "_reason", {"score_items": items})["kept"]

    def server_failures(self) -> list[str]:
        """Why each row that failed on the server's side (transient errors) failed: for the stage's verdict."""
        return [r["_reason"] for r in self.scores if r["status"] != "ok" and r["_server"]]


def classifier_cis(items: list[dict], x) -> tuple[tuple, tuple, float | None]:
    """Bootstrap intervals (balanced accuracy, AUROC) of one latent's yes/no items: whole prompts
    (``batch_index``) resampled, stratified (a cluster bootstrap: a prompt's answers are not independent)."""
    n, lvl = x.bootstrap_samples, x.ci_level
    done = [i for i in items if i["prediction"] is not None]
    ba = bootstrap.balanced_accuracy_ci([i["truth"] for i in done], [i["prediction"] == i["truth"] for i in done],
                                        n, items[0]["key"] if items else 0, lvl, [i["batch_index"] for i in done])
    probs = [i for i in done if i["probability"] is not None]
    au = bootstrap.auroc_ci([i["truth"] for i in probs], [i["probability"] for i in probs], n,
                            items[0]["key"] if items else 0, lvl, [i["batch_index"] for i in probs])
    return (ba.low, ba.high), (au.low, au.high), ba.value


def write_sensitivity(con, wh, layer: str, rng_label: str, efp: str, scorers, sens) -> None:
    """Inside the caller's transaction: the partition's scorer_sensitivity rows of ``scorers`` replaced by ``sens``."""
    con.execute(queries.DELETE_RANGE_SENSITIVITY, [layer, rng_label, efp, list(scorers)])
    if sens:
        wh.insert(con, "scorer_sensitivity", pl.DataFrame([{
            "layer": layer, "latent_range": rng_label, "explainer_fp": efp, "scorer": v.scorer, "latents": v.latents,
            "items": v.items, "changed": v.changed, "share_changed": v.share, "share_ci_low": v.share_low,
            "share_ci_high": v.share_high, "min_share": v.min_share, "reads_explanation": v.reads_explanation,
            "finding": v.finding} for v in sens], schema_overrides={
            "share_changed": pl.Float64, "share_ci_low": pl.Float64, "share_ci_high": pl.Float64,
            "reads_explanation": pl.Boolean}))
