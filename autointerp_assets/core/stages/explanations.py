"""Stage explanations: one explainer request per selected latent that has no ok explanation yet.

Incremental and monotone (:mod:`.incremental`): only latents without an ok explanation for the current
explainer fingerprint are sent (all of them with ``force``); a failure never replaces an ok explanation, it
is kept beside it. All requests go to the engine in one ``generate`` call (the engine bounds what is in
flight). Requests are recorded in the write-ahead ledger before they are sent (:mod:`..llm.ledger`) and
completed with the results, in one transaction. With a budget, latents are admitted in order while their
worst case fits; the rest are stored as ``budget_exceeded`` and :class:`BudgetExceeded` is raised after the
commit; a re-run sends only those. Too many failures, or a fatal server error, raise :class:`StageFailed`
after the commit (one line).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

from .. import explainers, output_explainers
from ..explainer_baselines import is_baseline
from ..identity import OUTPUT_KINDS, engine_label, explainer_spec, explainer_spec_fp
from ..llm import accounting
from ..llm.ledger import Ledger
from ..sampling.neighbours import decoder_rows
from ..storage import queries
from ..storage.monotone import merge
from ..vocabulary import token_strings
from .context import Context, rate
from .examples import load_examples
from .incremental import done_latents, failed_units, verdict
from .llm_runs import BUDGET_EXCEEDED, budget_stop, prompt_counter
from .sparse_coders import latest_coder
from .steering import load_steering

KEY = ("layer", "latent", "explainer_fp")


def _safetensors_tensor(model_dir: Path, names: tuple[str, ...]):
    """The first of ``names`` found in the model's safetensors (sharded or not), read alone."""
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"
    where = json.loads(index.read_text())["weight_map"] if index.exists() else None
    for name in names:
        files = [where[name]] if where and name in where else ([] if where else ["model.safetensors"])
        for f in files:
            path = model_dir / f
            if path.exists():
                with safe_open(str(path), "pt") as st:
                    if name in st.keys():
                        return st.get_tensor(name)
    return None


def logit_tokens(ctx: Context, layer: str, first: int, last: int, k: int) -> dict[int, list[str]]:
    """Per latent of the range, the k tokens its decoder direction promotes through the subject model's
    unembedding (W_dec row @ W_U^T, after the final norm's gain). Reads only W_dec (any checkpoint layout) and
    the unembedding / norm tensors (never the full model), once per partition."""
    coder = latest_coder(ctx.wh, layer)
    try:  # sparsify, SAELens or Gemma Scope layout
        w_dec = decoder_rows(coder["path"] if coder else "", first, last)
    except ValueError as e:
        raise RuntimeError(f"explainer.kind '{ctx.cfg.explainer.kind}' needs the decoder of {layer}'s sparse coder "
                           f"({e}): materialize sparse_coders first or use another explainer kind") from None
    model_dir = Path(ctx.model_dir())
    unembed = _safetensors_tensor(model_dir, ("lm_head.weight", "model.embed_tokens.weight"))
    if unembed is None:
        raise RuntimeError(f"no lm_head.weight or model.embed_tokens.weight in {model_dir}: "
                           "explainer.kind 'logit' needs the subject model's unembedding")
    norm = _safetensors_tensor(model_dir, ("model.norm.weight",))
    ids = explainers.promoted_tokens(w_dec, unembed, norm, k)
    vocab = token_strings(str(model_dir))
    return {first + i: [vocab[t] for t in row] for i, row in enumerate(ids.tolist())}


# the explainer's own negatives: drawn after the scorers' `non_activating` ones, never the same windows
COUNTEREXAMPLES = "train_non_activating"


def explainer_examples(ctx: Context, layer: str, first: int, last: int) -> dict:
    """Per latent, the splits the explainer reads: ``train`` and, for the contrastive kind, its own
    counterexamples (never the scorers' ``non_activating`` windows: showing those would leak the test)."""
    splits = ["train", COUNTEREXAMPLES] if ctx.cfg.explainer.kind == "contrastive" else ["train"]
    return load_examples(ctx, layer, first, last, splits)


def output_tokens(ctx: Context, layer: str, first: int, last: int) -> dict[int, list[tuple[str, float]]]:
    """Per latent, (token, mean probability rise) when it is stimulated (stage steering), strongest first."""
    return {lat: list(zip(r["top_tokens"], r["top_increases"]))
            for lat, r in load_steering(ctx, layer, first, last).items()}


def explainer_request(ecfg, exs: dict, latent_max: float, count, logit_toks=(), output_toks=()):
    """One latent's explainer request: the output-only prompt for kind token_change, else the input prompt
    (with its kind's extras) shrunk to fit the context."""
    if ecfg.kind == "token_change":
        return output_explainers.token_change_request(ecfg, output_toks)
    room = ecfg.llm.max_model_len - ecfg.max_tokens - 8
    return explainers.fit_explainer_request(ecfg, exs["train"], latent_max, count, room,
                                            counterexamples=exs.get(COUNTEREXAMPLES, ()), logit_tokens=logit_toks,
                                            output_tokens=output_toks)[0]


def partition_label(layer: str, first: int, last: int) -> str:
    return f"{layer} latents {first}-{last}"


@dataclass
class ExplainPlan:
    """One explanations run: the explainer, the latents to explain and, as they are built (:meth:`build`) and
    admitted by the budget into the ledger (:meth:`admit`), their requests: ``sent`` (with their call ids) are
    the leading latents' until the budget stops admitting."""
    layer: str
    first: int
    last: int
    force: bool
    efp: str
    spec: dict
    sampler_fp: str
    units: list[int]    # the latents the explainer covers
    done: set[int]      # of those, already explained (not sent again)
    latents: list[int]  # to explain, in order
    make: Callable      # latent -> its request
    ledger: Ledger
    built: list = field(default_factory=list)
    sent: list = field(default_factory=list)
    stopped: bool = False  # the budget refused a latent: no later one is sent

    def build(self, n: int) -> list:
        """The next ``n`` latents' requests (prompts fitted to the context: the tokenizer's work)."""
        new = [self.make(lat) for lat in self.latents[len(self.built):len(self.built) + n]]
        self.built += new
        return new

    def admit(self, requests: list) -> list:
        """The leading ``requests`` (the latest built) that fit the budget, recorded as sent: they may be sent."""
        if self.stopped or not requests:
            return []
        lats = self.latents[len(self.sent):len(self.sent) + len(requests)]
        n, admitted = self.ledger.admit([[(r, {"latent": lat})] for lat, r in zip(lats, requests)])
        self.stopped = n < len(requests)
        self.sent += [unit[0] for unit in admitted]
        return [unit[0] for unit in admitted]

    @property
    def n_sent(self) -> int:
        return len(self.sent)


def plan_explanations(ctx: Context, layer: str, first: int, last: int, force: bool = False) -> ExplainPlan:
    """The explanations run of the latents without an ok explanation (all with ``force``); nothing built yet."""
    cfg, ecfg = ctx.cfg, ctx.cfg.explainer
    spec = explainer_spec(cfg, ctx.workdir)
    efp = explainer_spec_fp(spec)
    exs = explainer_examples(ctx, layer, first, last)
    sfp = ctx.wh.scalar(queries.RANGE_SELECTION_SAMPLER_FP, [layer, first, last]) or ""
    maxes = dict(ctx.wh.query(queries.RANGE_MAX_ACTIVATIONS, [layer, first, last]).iter_rows())
    units = [lat for lat in sorted(exs) if "train" in exs[lat]][:ecfg.max_latents]
    outputs = output_tokens(ctx, layer, first, last) if ecfg.kind in OUTPUT_KINDS and units else {}
    if outputs:  # an output-centric explainer explains the latents the steering stage stimulated
        units = [lat for lat in units if lat in outputs]
    done = set() if force else done_latents(ctx.wh, layer, first, last, efp, sfp) & set(units)
    latents = [lat for lat in units if lat not in done]
    logits = logit_tokens(ctx, layer, first, last, ecfg.n_logit_tokens) if ecfg.kind == "logit" and latents else {}
    count = prompt_counter(ecfg.llm, ctx.workdir)

    def make(lat: int):
        return explainer_request(ecfg, exs[lat], float(maxes.get(lat) or 0.0), count, logits.get(lat, ()),
                                 outputs.get(lat, ()))

    ledger = Ledger(ctx.wh, ecfg.llm, cfg.budget, layer=layer, stage="explanations", role="explainer",
                    explainer_fp=efp, count=count)
    return ExplainPlan(layer, first, last, force, efp, spec, sfp, units, done, latents, make, ledger)


def run_explanations(ctx: Context, client, layer: str, first: int, last: int, force: bool = False) -> dict:
    if is_baseline(ctx.cfg.explainer.kind):  # top_tokens / logit_lens: no LLM (client unused, may be None)
        from .baseline_explanations import run_baseline_explanations

        return run_baseline_explanations(ctx, layer, first, last)
    with ctx.wh.session():  # one open database for the planning's reads and the ledger's write
        plan = plan_explanations(ctx, layer, first, last, force)
        plan.admit(plan.build(len(plan.latents)))
    t0 = time.perf_counter()
    responses = asyncio.run(client.generate(plan.sent)) if plan.sent else []
    with ctx.wh.session():
        return finish_explanations(ctx, plan, responses, time.perf_counter() - t0)


def outcome(req, resp) -> tuple[str, str | None, str | None]:
    """(status, explanation, error) of one answer."""
    if not resp.ok:
        return "llm_error", None, resp.error
    text = explainers.parse_explanation(resp.text, req.prefill)
    if not text:
        return "parse_error", None, "parse_error: no explanation after the marker line"
    return "ok", text, None


def finish_explanations(ctx: Context, plan: ExplainPlan, responses: list, secs: float) -> dict:
    """The plan's answers (``responses[i]`` for ``plan.sent[i]``) merged with the ledger in one transaction; the
    stage's result, or StageFailed / BudgetExceeded after the commit."""
    cfg, ecfg, efp, sfp = ctx.cfg, ctx.cfg.explainer, plan.efp, plan.sampler_fp
    layer, first, last, force = plan.layer, plan.first, plan.last, plan.force
    n_sent, sent, ledger, units, done = plan.n_sent, plan.sent, plan.ledger, plan.units, plan.done
    rows, calls = [], []
    for i, lat in enumerate(plan.latents):
        row = {"layer": layer, "latent": lat, "explainer_fp": efp, "sampler_fp": sfp}
        if i >= n_sent:
            rows.append({**row, "status": BUDGET_EXCEEDED, "explanation": None, "raw_text": None,
                         "error": "not sent: the budget would have been exceeded", "prompt_tokens": 0,
                         "cached_tokens": 0, "completion_tokens": 0, "latency_s": 0.0, "cost_usd": 0.0})
            continue
        req, resp = sent[i], responses[i]
        resp.call_id = req.call_id
        call = accounting.call_row(ecfg.llm, resp, run_id=ledger.run_id, layer=layer, latent=lat, stage="explanations",
                                   role="explainer", explainer_fp=efp, fingerprint=efp, scorer=None, batch_index=None)
        calls.append(call)
        if resp.fatal:  # the server refuses everything alike: the stage stops, nothing is recorded per latent
            continue
        status, text, error = outcome(req, resp)
        rows.append({**row, "status": status, "explanation": text, "raw_text": req.prefill + resp.text,
                     "error": error, "prompt_tokens": resp.prompt_tokens, "cached_tokens": resp.cached_tokens,
                     "completion_tokens": resp.completion_tokens, "latency_s": resp.latency_s,
                     "cost_usd": call["cost_usd"]})
    frame = pl.DataFrame(rows, schema_overrides={"explanation": pl.Utf8, "error": pl.Utf8, "raw_text": pl.Utf8,
                                                 "cost_usd": pl.Float64, "latency_s": pl.Float64}) \
        if rows else pl.DataFrame()
    for attempt in ctx.wh.attempts():
        with attempt as con:
            ctx.wh.record_fingerprint(con, efp, "explainer", plan.spec)
            merged = merge(con, ctx.wh, "explanations", frame, KEY, "error")
            ledger.complete(con, calls)
            failures = failed_units(con, "explanations", layer, efp, units)
    st = frame["status"].value_counts().rows() if rows else []
    out = {"explainer_fp": efp, "explainer_kind": ecfg.kind, "explainer_engine": engine_label(plan.spec["llm"]),
           "status": dict(st), "latents": len(units),
           "latents_sent": n_sent, "latents_already_done": len(done), "resumed": bool(done), "forced": force,
           "failures_kept_beside_ok": merged["kept"], "seconds": round(secs, 2), "latents_per_s": rate(n_sent, secs),
           **accounting.totals(calls),
           "sample": [(r["latent"], r["explanation"]) for r in rows[:5]]}
    fatal = next((r.error for r in responses if r.fatal), None)
    verdict("explanations", partition_label(layer, first, last), sent=n_sent,
            server_failures=[r.error for r in responses if r.transient], units=len(units), failures=failures,
            max_share=cfg.failures.max_share, fatal=fatal, summary=out)
    if n_sent < len(plan.latents):
        raise budget_stop(len(plan.latents) - n_sent, len(plan.latents), "explained", layer, first, last, out)
    return out
