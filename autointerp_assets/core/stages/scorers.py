"""Stage scores, second pass: the scorers behind one interface (:class:`Scorer`: embedding, surprisal,
simulation, intruder, and every configured random-explanation control), bootstrap CIs and heuristic flags
of one partition (after the yes/no pass of :mod:`.classifier_scores`, on the same explainer's ok explanations).

Writes, in ONE transaction: rows of ``scores`` / ``score_items`` for scorers 'simulation', 'embedding',
'surprisal', 'intruder' and every '<scorer>_control' (control = true) — only for the (latent, scorer) pairs
that had no done row yet (all with ``force``), merged monotonically (:mod:`.incremental`: a failure never
replaces an ok row); the bootstrap intervals, metric/value and latent_range of the detection/fuzzing
rows the first pass wrote; ``scorer_sensitivity`` (does each controlled scorer read the explanation?); the
heuristic flag columns of ``latent_stats``; the LLM calls in ``llm_calls`` (recorded before they are sent:
:mod:`..llm.ledger`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from dataclasses import dataclass
from functools import cached_property

import polars as pl

from .. import identity
from ..identity import llm_identity, model_identity, scorer_spec
from ..llm import accounting
from ..scoring import (bootstrap, classifier, controls, embedding, heuristics, intruder, sensitivity, simulation,
                       surprisal)
from ..storage import queries
from ..subject_model import resolve_model
from .activations import separators_of
from .context import Context
from .examples import load_examples
from .explanations import partition_label
from .incremental import done_scores, failed_units, verdict
from .score_rows import PRIMARY, ScoreRows, classifier_cis, latent_of, start_scoring, write_sensitivity

EXTRA = ("simulation", "embedding", "surprisal", "intruder")


def _subset(exs: list, n: int | None, seed: str) -> list:
    if n is None or len(exs) <= n:
        return list(exs)
    keep = set(random.Random(seed).sample(range(len(exs)), n))
    return [ex for i, ex in enumerate(exs) if i in keep]


def partition_flags(ctx: Context, layer: str, first: int, last: int) -> pl.DataFrame | None:
    """The heuristic flags of the partition's latents (None without a corpus)."""
    corpus_fp = ctx.corpus_fp()
    with ctx.wh.read() as con:
        if not con.execute(queries.CORPUS_ROW_COUNT, [corpus_fp]).fetchone()[0]:
            return None
        return heuristics.range_flags(con, layer, first, last, corpus_fp, separators_of(ctx), ctx.cfg.scoring)


@dataclass
class Run:
    """One pass of a scorer over the latents it still has to score: with their own explanations, or (the
    random-explanation control, scorer ``<name>_control``) with another latent's."""
    name: str
    idx: list[int]  # indices into the partition's latents
    texts: list[str]
    control: bool


@dataclass
class Partition:
    """What every scorer of a partition reads: its latents with their explanations and test examples, the
    control's donor explanations, the pairs already done, and the rows collected for the commit."""
    ctx: Context
    client: object
    layer: str
    efp: str
    rng_label: str
    latents: list[int]
    keys: list[str]
    text: dict[int, str]
    tests: list[list]
    nons: list[list]
    donor: dict[int, int]  # latent -> the latent whose explanation its control run reads
    donor_text: list[str]
    want_control: set[str]
    already: set
    rows: "ScoreRows"
    llm_id: dict

    @property
    def x(self):
        return self.ctx.cfg.scoring

    @cached_property
    def both(self) -> list[list]:
        """Each latent's test examples, activating then non-activating."""
        return [t + n for t, n in zip(self.tests, self.nons)]

    def pick(self, seq, idx: list[int]) -> list:
        return [seq[i] for i in idx]

    def todo(self, name: str) -> list[int]:
        """Indices (into latents) of the latents scorer ``name`` still has to score."""
        return [i for i, lat in enumerate(self.latents) if (lat, name) not in self.already]

    def runs(self, scorer: "Scorer") -> list[Run]:
        """The scorer's real run and, if its control is wanted, its control run; runs with nothing to do left out."""
        out = []
        if scorer.real:
            out.append(Run(scorer.name, self.todo(scorer.name), [self.text[lat] for lat in self.latents], False))
        if scorer.name in self.want_control:
            out.append(Run(f"{scorer.name}_control", self.todo(f"{scorer.name}_control"), self.donor_text, True))
        return [dataclasses.replace(r, texts=self.pick(r.texts, r.idx)) for r in out if r.idx]


class Scorer:
    """A scorer of stage scores: its spec (the fingerprint) and how it scores one run into the rows."""
    name = ""
    real = True  # False: only its control runs here (detection / fuzzing: the first pass made the real rows)

    def __init__(self, mode=None):
        self.mode = mode

    @property
    def label(self) -> str:
        return self.name

    def prepare(self, part: Partition) -> None:
        """Load what scoring needs (a model), once there is work."""

    def spec(self, part: Partition) -> dict:
        """What the scorer's rows are made from (its fingerprint), known before ``prepare``: a changed setting
        makes every stored score of the scorer not done."""
        raise NotImplementedError

    def score(self, part: Partition, run: Run, sfp: str) -> None:
        raise NotImplementedError


class ClassifierControl(Scorer):
    """detection / fuzzing with another latent's explanation (their real rows: the first pass, :mod:`.classifier_scores`)."""
    real = False

    def __init__(self, kind: str):
        super().__init__()
        self.name = kind

    @property
    def label(self) -> str:
        return f"{self.name}_control"

    def spec(self, part):
        return scorer_spec(part.ctx.cfg, part.ctx.workdir, self.name)

    def score(self, part, run, sfp):
        jobs = [classifier.ScoreJob(k, part.text[lat], t, n)
                for k, lat, t, n in zip(part.keys, part.latents, part.tests, part.nons)]
        cjobs = controls.control_jobs(jobs, {k: part.text[lat] for k, lat in zip(part.keys, part.latents)},
                                      {k: f"{part.layer}/{part.donor[lat]}" for k, lat in zip(part.keys, part.latents)})
        results = asyncio.run(classifier.score_latents(part.client, self.name, part.pick(cjobs, run.idx),
                                                       part.ctx.cfg.scorer))
        for res in results:
            part.rows.add_classifier(run.name, sfp, res, part.x, control=True)


class AurocScorer(Scorer):
    """An explanation-vs-example scorer with a value per example: AUROC of activating vs not."""
    values = ""

    def examples(self, part: Partition, run: Run):
        raise NotImplementedError

    def score(self, part, run, sfp):
        x = part.x
        for s in self.examples(part, run):
            lat, vals = latent_of(s.key), getattr(s, self.values)
            ci = bootstrap.auroc_ci(s.activating, vals, x.bootstrap_samples, f"{s.key}:{run.name}", x.ci_level)
            part.rows.add(run.name, sfp, lat, value=s.auroc, ci=(ci.low, ci.high), auroc=s.auroc,
                          auroc_ci=(ci.low, ci.high), n=len(s.example_ids), n_failed=0, control=run.control,
                          counts={"n_pos": sum(s.activating), "n_neg": len(s.activating) - sum(s.activating)})
            for eid, q, a, v in zip(s.example_ids, s.quantiles, s.activating, vals):
                part.rows.item(run.name, sfp, lat, eid, q, a, a, None, value=v)


class EmbeddingScorer(AurocScorer):
    name, values = "embedding", "similarity"

    def prepare(self, part):
        self.encode = embedding.encoder(part.x.embedding_model)

    def spec(self, part):
        return identity.embedding_spec(embedding.identity(part.x.embedding_model))

    def examples(self, part, run):
        return embedding.score_embedding(self.encode, part.pick(part.keys, run.idx), run.texts,
                                         part.pick(part.both, run.idx))


class SurprisalScorer(AurocScorer):
    name, values = "surprisal", "value"

    def prepare(self, part):
        self.tok, self.model = surprisal.load_base_lm(resolve_model(self._model(part), part.ctx.workdir))
        assert str(self.model.dtype) == surprisal.dtype_name(), "the spec's dtype is the one loaded"

    def spec(self, part):
        return identity.surprisal_spec(model_identity(self._model(part), part.ctx.workdir), surprisal.PROMPT_VERSION,
                                       surprisal.dtype_name())

    @staticmethod
    def _model(part) -> str:
        return part.x.surprisal_model or part.ctx.cfg.subject_model

    def examples(self, part, run):
        return surprisal.score_surprisal(self.tok, self.model, part.pick(part.keys, run.idx), run.texts,
                                         part.pick(part.both, run.idx), part.x.surprisal_batch_size)


class SimulationScorer(Scorer):
    """The scorer LLM predicts each token's activation from the explanation (``mode``: logprobs or json)."""
    name = "simulation"

    def spec(self, part):
        x = part.x
        return identity.simulation_spec(part.llm_id, self.mode, x.simulation_top_logprobs, x.simulation_max_examples,
                                        simulation.PROMPT_VERSION)

    def prepare(self, part):
        x, n = part.x, part.x.simulation_max_examples  # the examples shown: the same for the real and control runs
        self.shown = [_subset(t, n, f"{x.seed}:{k}:t") + _subset(m, n, f"{x.seed}:{k}:n")
                      for k, t, m in zip(part.keys, part.tests, part.nons)]

    def score(self, part, run, sfp):
        x = part.x
        for s in simulation.score_simulation(part.client, part.pick(part.keys, run.idx), run.texts,
                                             part.pick(self.shown, run.idx), self.mode, x.simulation_top_logprobs):
            lat = latent_of(s.key)
            ok = [i for i, p in enumerate(s.predicted) if p is not None]
            ci = bootstrap.correlation_ci([s.true[i] for i in ok], [s.predicted[i] for i in ok],
                                          x.bootstrap_samples, f"{s.key}:{run.name}", x.ci_level)
            part.rows.add(run.name, sfp, lat, value=s.correlation, ci=(ci.low, ci.high), n=len(s.example_ids),
                          n_failed=s.n_failed, control=run.control, n_batches=len(s.responses),
                          failures=s.failure_reasons, responses=s.responses)
            for b, (eid, q, a, p) in enumerate(zip(s.example_ids, s.quantiles, s.activating, s.predicted)):
                part.rows.item(run.name, sfp, lat, eid, q, a, a, None, value=None if p is None else float(p.max()),
                               batch_index=b)


class IntruderScorer(Scorer):
    """Explanation-free: can the scorer LLM spot the non-activating example among activating ones?"""
    name = "intruder"

    def spec(self, part):
        x = part.x
        return identity.intruder_spec(part.llm_id, x.intruder_shown, x.intruder_rounds, part.ctx.cfg.scorer.threshold,
                                      x.seed, intruder.PROMPT_VERSION)

    def score(self, part, run, sfp):
        x = part.x
        for s in intruder.score_intruder(part.client, part.pick(part.keys, run.idx), part.pick(part.tests, run.idx),
                                         part.pick(part.nons, run.idx), x.intruder_shown, x.intruder_rounds,
                                         part.ctx.cfg.scorer.threshold, x.seed):
            lat = latent_of(s.key)
            done = [r for r in s.rounds if r.correct is not None]
            ci = bootstrap.accuracy_ci([r.correct for r in done], x.bootstrap_samples, f"{s.key}:intruder", x.ci_level)
            part.rows.add("intruder", sfp, lat, value=s.accuracy, ci=(ci.low, ci.high), accuracy=s.accuracy,
                          n=len(s.rounds), n_failed=len(s.rounds) - len(done), control=False, n_batches=len(s.rounds),
                          failures=s.failure_reasons, responses=s.responses)
            for b, r in enumerate(s.rounds):
                part.rows.item("intruder", sfp, lat, r.intruder_id, -1, False, True, r.correct, r.probability,
                               batch_index=b)


SCORERS = {"embedding": EmbeddingScorer, "surprisal": SurprisalScorer, "simulation": SimulationScorer,
           "intruder": IntruderScorer}


def run_scorers(ctx: Context, client, layer: str, first: int, last: int, explainer_fp: str | None = None,
                force: bool = False) -> dict:
    """``explainer_fp``: score another explainer's stored explanations (default: the configured explainer's).
    ``force``: re-send every pair, not only those without an ok row."""
    cfg, x = ctx.cfg, ctx.cfg.scoring
    kinds = [k for k in cfg.scorer.scorers]  # detection / fuzzing kinds the first pass ran
    extras = [k for k in x.scorers if k in EXTRA]  # intervention: stage intervention_scores
    sim_mode = None
    if "simulation" in extras:  # a bad mode for this engine fails here, before any heavy work
        sim_mode = simulation.resolve_mode(x.simulation_mode, client)
    setup = start_scoring(ctx, client, layer, first, last, explainer_fp)
    efp, ledger, client, rng_label, expl = setup.efp, setup.ledger, setup.client, setup.rng_label, setup.explanations
    exs = load_examples(ctx, layer, first, last, ["test", "non_activating"])
    latents = expl["latent"].to_list()
    text = dict(expl.iter_rows())
    keys = [f"{layer}/{lat}" for lat in latents]
    tests = [exs.get(lat, {}).get("test", []) for lat in latents]
    nons = [exs.get(lat, {}).get("non_activating", []) for lat in latents]
    donor = controls.donors(latents, f"{x.seed}:{layer}:{rng_label}:{efp}") if x.control else {}
    donor_text = [text[donor[lat]] for lat in latents] if donor else []
    want_control = set(x.control_scorers) if donor else set()
    part = Partition(ctx, client, layer, efp, rng_label, latents, keys, text, tests, nons, donor, donor_text,
                     want_control, set(), setup.rows(ctx, layer),
                     llm_identity(cfg.scorer_llm, ctx.workdir))
    rows, seconds = part.rows, {}
    scorers = [ClassifierControl(k) for k in kinds] + [SCORERS[k](sim_mode if k == "simulation" else None)
                                                       for k in ("embedding", "surprisal", "simulation", "intruder")
                                                       if k in extras]
    # each scorer's real and control fingerprint: a pair is done only under the current one
    specs = {s.label: s.spec(part) for s in scorers}
    fps = {}
    for s in scorers:
        if s.real:
            fps[s.name] = identity.scorer_fp(specs[s.label])
        if s.name in want_control:
            fps[f"{s.name}_control"] = identity.scorer_fp(identity.control_spec(specs[s.label], x.seed))
    names = list(fps)
    part.already = already = set() if force else done_scores(ctx.wh, layer, first, last, efp, fps)

    # detection / fuzzing: intervals of the first pass's rows (their controls are scorers below)
    ci_rows = []
    if kinds and latents:
        items = ctx.wh.query(queries.RANGE_CLASSIFIER_ITEMS, [layer, first, last, efp, kinds])
        for (lat, kind), grp in items.group_by(["latent", "scorer"], maintain_order=True):
            its = [{**r, "key": f"{layer}/{lat}:{kind}"} for r in grp.iter_rows(named=True)]
            ci, auci, _ = classifier_cis(its, x)
            ci_rows.append({"layer": layer, "latent": lat, "explainer_fp": efp, "scorer": kind, "ci_low": ci[0],
                            "ci_high": ci[1], "auroc_ci_low": auci[0], "auroc_ci_high": auci[1]})
    for scorer in scorers:
        runs = part.runs(scorer)
        if not runs:
            continue
        t0 = time.perf_counter()
        scorer.prepare(part)
        spec = specs[scorer.label]
        for run in runs:
            scorer.score(part, run, rows.fp(identity.control_spec(spec, x.seed) if run.control else spec))
        seconds[scorer.label] = round(time.perf_counter() - t0, 2)
        ctx.log(f"{layer} {rng_label}: {scorer.label} in {seconds[scorer.label]}s")

    t0 = time.perf_counter()
    flags = partition_flags(ctx, layer, first, last)
    seconds["flags"] = round(time.perf_counter() - t0, 2)
    kept, failures, sens = _commit(ctx, layer, first, last, efp, rows, ci_rows, flags, kinds, rng_label, ledger,
                                   latents, names)
    out = _summary(ctx, layer, efp, rng_label, kinds, extras, rows, flags, donor, seconds)
    out["sensitivity"] = [dataclasses.asdict(v) for v in sens]
    out.update(pairs_already_done=len(already), failures_kept_beside_ok=kept, forced=force)
    verdict("scores (extra scorers and controls)", partition_label(layer, first, last), sent=len(rows.scores),
            server_failures=rows.server_failures(),
            units=len(latents) * len(names), failures=failures, max_share=cfg.failures.max_share, fatal=rows.fatal,
            unit="latent x scorer scores", summary=out)
    return out


def sensitivities(con, layer: str, first: int, last: int, efp: str, kinds, x,
                  values=("simulation", "embedding", "surprisal")) -> list[sensitivity.Sensitivity]:
    """Per scorer with a control: the share of answers that change with the control's explanation, next to the
    median paired difference real - control (see core.scoring.sensitivity). Read inside the commit's
    transaction: the partition as it now stands (this run's pairs merged with earlier ones). ``kinds``: scorers
    answering yes/no per item (their predictions are compared), ``values``: scorers giving a value per item."""
    args = [layer, first, last, efp]
    items = con.execute(queries.RANGE_CONTROLLED_ITEMS, args).pl()
    scores = con.execute(queries.RANGE_CONTROLLED_VALUES, args).pl()
    key = lambda i: (i["latent"], i["example_id"], i["truth"])  # noqa: E731

    def of(name: str) -> list[dict]:
        return items.filter(pl.col("scorer") == name).to_dicts()

    def per_latent(name: str) -> dict[int, float]:
        return dict(scores.filter(pl.col("scorer") == name).select("latent", "value").iter_rows())

    out = []
    for name in [*kinds, *values]:
        ctl, mine = of(f"{name}_control"), of(name)
        if not ctl or not mine:
            continue
        if name in kinds:
            real = {key(i): i["prediction"] for i in mine}
            control = {key(i): i["prediction"] for i in ctl}
        else:
            real = sensitivity.value_labels([key(i) for i in mine], [i["value"] for i in mine])
            control = sensitivity.value_labels([key(i) for i in ctl], [i["value"] for i in ctl])
        real_value, control_value = per_latent(name), per_latent(f"{name}_control")
        paired = sorted(set(real_value) & set(control_value))
        diff = bootstrap.summarize([real_value[lat] for lat in paired], [control_value[lat] for lat in paired])
        out.append(sensitivity.assess(name, sensitivity.changed_per_latent(real, control), x.sensitivity_min_share,
                                      x.bootstrap_samples, f"{x.seed}:{layer}:{first}:{name}", x.ci_level, diff))
    return out


def _commit(ctx, layer, first, last, efp, rows: ScoreRows, ci_rows, flags, kinds, rng_label, ledger, latents,
            names) -> tuple[int, list[str], list[sensitivity.Sensitivity]]:
    wh = ctx.wh
    for attempt in wh.attempts():
        with attempt as con:
            kept = rows.merge(con)
            # the first pass's rows: primary metric, intervals and partition label (their other columns untouched)
            con.execute(queries.SET_CLASSIFIER_METRIC, [rng_label, layer, first, last, efp, list(kinds)])
            if ci_rows:
                con.register("_ci", pl.DataFrame(ci_rows, schema_overrides={
                    k: pl.Float64 for k in ("ci_low", "ci_high", "auroc_ci_low", "auroc_ci_high")}).to_arrow())
                con.execute(queries.SET_CLASSIFIER_CIS)
                con.unregister("_ci")
            if flags is not None and flags.height:
                con.register("_flags", flags.to_arrow())
                con.execute(queries.SET_LATENT_FLAGS, [layer])
                con.unregister("_flags")
            values = ("simulation", "embedding", "surprisal")
            sens = sensitivities(con, layer, first, last, efp, kinds, ctx.cfg.scoring, values)
            write_sensitivity(con, wh, layer, rng_label, efp, [*kinds, *values], sens)
            ledger.complete(con, rows.ledger)
            failures = failed_units(con, "scores", layer, efp, latents, names)
    return kept, failures, sens


def _summary(ctx, layer, efp, rng_label, kinds, extras, rows: ScoreRows, flags, donor, seconds) -> dict:
    """Per scorer: median / IQR of the real per-latent values, the control's median and the median paired
    difference with its interval (the same numbers as the view scorer_summary)."""
    real = ctx.wh.query(queries.RANGE_REAL_VALUES, [layer, rng_label, efp, list(kinds) + list(extras)])
    states = {r[0]: r[1:] for r in ctx.wh.query(queries.RANGE_UNDEFINED_FAILED, [layer, rng_label, efp]).iter_rows()}
    # the partition as it now stands: controls of this run merged with earlier ones
    ctls = ctx.wh.query(queries.RANGE_CONTROL_VALUES, [layer, rng_label, efp])
    ctl = {(lat, name.removesuffix("_control")): v for lat, name, v in ctls.iter_rows()}
    out: dict = {}
    for name in list(kinds) + list(extras):
        grp = real.filter(pl.col("scorer") == name)
        if grp.is_empty() and name not in states:
            continue
        lats, vals = grp["latent"].to_list(), grp["value"].to_list()
        has_ctl = any((lat, name) in ctl for lat in lats)
        s = bootstrap.summarize(vals, [ctl.get((lat, name)) for lat in lats] if has_ctl else None)
        undefined, failed = states.get(name, (0, 0))
        out[name] = {"metric": PRIMARY[name], **s, "latents_undefined": undefined, "latents_failed": failed}
    flag_counts = {}
    if flags is not None:
        flag_counts = {c: int(flags[c].sum()) for c in heuristics.FLAGS}
    control_values: dict[str, list] = {}
    for (_, name), v in ctl.items():
        control_values.setdefault(name, []).append(v)
    return {"explainer_fp": efp, "latent_range": rng_label, "latents": real["latent"].n_unique(),
            "control_pairs": len(donor), "seconds": seconds, "summary": out, "control_values": control_values,
            "flags": flag_counts,
            "flagged_latents": {c: flags.filter(pl.col(c))["latent"].to_list() for c in flag_counts} if flags is not None
            else {}, **accounting.totals(rows.ledger)}
