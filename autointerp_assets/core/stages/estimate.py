"""What a run will cost before it runs: LLM requests, prompt / completion tokens and dollars per stage.

Nothing is sent. For every partition and every explainer (the active one and its companions: the baselines,
which cost no LLM call to explain, and the output-centric explainers) the estimate counts the latents that will
be explained -- the sampler's selection where the examples are stored, else the config's cap
(``latents.max_per_range`` or the range size), up to the explainer's ``max_latents`` -- and, for a sample of them, builds the exact requests each LLM stage would send with the stages' own
prompt builders: from the stored examples (and steering rows), or before sampling from windows of the
corpus. Prompts are counted with the LLM's tokenizer and chat template (about 4 characters per token for a
remote model without a local tokenizer); a constrained answer's completion is counted from its fixed format,
a free explanation at ``max_tokens`` (an upper bound). Scorer prompts carry a placeholder explanation of
typical length. Dollars use each engine's price table with no prompt token assumed cached (an upper bound
where the server caches prefixes). Local scorers (embedding, surprisal) send no LLM request.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

import polars as pl

from ..config import LLMConfig, ProjectConfig
from ..explainer_baselines import is_baseline
from ..identity import OUTPUT_KINDS
from ..records import Example
from ..scoring import classifier, intruder, simulation
from ..scoring.intervention import InterventionJob, Pair
from ..scoring.intervention import requests as intervention_requests
from ..storage import queries
from ..vocabulary import token_strings
from .baseline_explanations import baseline_contexts
from .context import Context
from .examples import load_examples
from .explanations import COUNTEREXAMPLES, explainer_request
from .llm_runs import prompt_counter
from .steering import prompts as steering_prompts

PLACEHOLDER_EXPLANATION = "Names of cities, mostly after \"in\" or \"from\", in travel sentences."


@dataclass
class Line:
    stage: str
    explainer: str
    scorer: str
    llm: LLMConfig
    latents: float = 0.0
    requests: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0

    def add(self, scale: float, prompts: Sequence[int], completions: Sequence[int]) -> None:
        self.requests += scale * len(prompts)
        self.prompt_tokens += scale * sum(prompts)
        self.completion_tokens += scale * sum(completions)


def _answer_tokens(tok_count: Callable[[str], int], n: int) -> int:
    """Completion tokens of a constrained list of n 0/1 answers, "[1, 0, ...]", plus the end token."""
    return tok_count("[" + ", ".join(["1"] * n) + "]") + 1


def _text_counter(llm: LLMConfig, workdir) -> Callable[[str], int]:
    from .llm_runs import _tokenizer

    tok = _tokenizer(llm.model, str(workdir))
    if tok is None:
        return lambda text: max(1, len(text) // 4)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


class _Windows:
    """Example windows for partitions whose examples are not sampled yet: corpus windows of the sampler's
    length (the stored tokens, else the corpus source tokenized here), with one activating token each."""

    def __init__(self, ctx: Context):
        self.ctx, self._rows = ctx, None

    def rows(self):
        if self._rows is None:
            from .corpus import load_rows

            rows = load_rows(self.ctx, limit=64) if self.ctx.wh.scalar(queries.CORPUS_ROW_COUNT, [self.ctx.corpus_fp()]) else None
            if rows is None or not len(rows):
                from transformers import AutoTokenizer

                from ..corpus import bos_id, iter_documents, pack_rows

                tok = AutoTokenizer.from_pretrained(self.ctx.model_dir())
                c = self.ctx.cfg.corpus
                rows = pack_rows(iter_documents(c), tok, c.ctx_len, 64, bos_id(c, tok))
            self._rows = rows
        return self._rows

    def examples(self, n: int, activating: bool, seed: str) -> list[Example]:
        s = self.ctx.cfg.sampler
        vocab = token_strings(self.ctx.model_dir())
        rows, rng, w = self.rows(), random.Random(seed), s.example_ctx_len
        out = []
        for i in range(n):
            r = rows[rng.randrange(len(rows))]
            start = 1 + rng.randrange(max(1, len(r) - w - 1))
            toks = tuple(vocab[t] for t in r[start:start + w])
            acts = [0.0] * len(toks)
            if activating:
                acts[min(len(toks) - 1, s.peak_offset if s.window == "centred" else rng.randrange(len(toks)))] = 1.0
            out.append(Example(i, toks, tuple(acts), activating, 0 if activating else -1))
        return out

    def latent(self, lat: int) -> dict[str, list[Example]]:
        s = self.ctx.cfg.sampler
        return {"train": self.examples(s.n_train, True, f"{lat}:train"),
                "test": self.examples(s.n_test, True, f"{lat}:test"),
                "non_activating": self.examples(s.n_non_activating, False, f"{lat}:non"),
                COUNTEREXAMPLES: self.examples(s.n_train_non_activating, False, f"{lat}:cnon")}


def _pairs(ctx: Context, layer: str, first: int, last: int, lat: int, windows: _Windows) -> list[Pair]:
    """The intervention scorer's pairs of a latent: the stored continuations, else prompts with corpus text of
    the continuations' length."""
    rows = ctx.wh.query(queries.LATENT_STEERED_TEXTS, [layer, lat])
    if rows.height:
        return [Pair(*r) for r in rows.iter_rows()]
    n = ctx.cfg.steering.max_new_tokens
    _, score = steering_prompts(ctx.cfg)
    fill = ["".join(ex.str_tokens[:n]) for ex in windows.examples(2 * len(score), False, f"{lat}:pairs")]
    return [Pair(i, p, fill[2 * i], fill[2 * i + 1]) for i, p in enumerate(score)]


def explainers_of(ctx: Context) -> list[tuple[str, ProjectConfig]]:
    """(name, config) of the active explainer and its companions, as the explanations and scores assets run them."""
    return [(ctx.cfg.explainer.kind, ctx.cfg)] + [(b.cfg.explainer.kind, b.cfg) for b in baseline_contexts(ctx)]


def estimate(ctx: Context, sample: int = 8) -> pl.DataFrame:
    """One row per (stage, explainer, scorer): latents, requests, prompt / completion tokens, dollars (all
    partitions); see the module docstring for what is counted and assumed."""
    panel = explainers_of(ctx)
    cfg0 = ctx.cfg
    windows = _Windows(ctx)
    lines: dict[tuple[str, str, str], Line] = {}

    def line(stage: str, name: str, scorer: str, llm: LLMConfig) -> Line:
        return lines.setdefault((stage, name, scorer), Line(stage, name, scorer, llm))

    for layer in cfg0.layer_keys():
        for first, last in cfg0.latents.ranges():
            stored = ctx.wh.query(queries.RANGE_SELECTED_LATENTS, [layer, first, last])["latent"].to_list()
            if stored:
                latents = stored
            else:
                cap = cfg0.latents.max_per_range or (last - first + 1)
                latents = list(range(first, first + min(cap, last - first + 1)))
            exs = load_examples(ctx, layer, first, last, ["train", "test", "non_activating", COUNTEREXAMPLES]) \
                if stored else {}
            for name, cfg in panel:
                mine = latents[:cfg.explainer.max_latents]
                picked = sorted(random.Random(f"{layer}:{first}").sample(mine, min(sample, len(mine))))
                scale = len(mine) / max(1, len(picked))
                _one_partition(ctx, cfg, name, layer, first, last, picked, scale, len(mine), exs, windows, line)
    rows = []
    for ln in lines.values():
        cost = ln.llm.price.cost(int(ln.prompt_tokens), 0, int(ln.completion_tokens))
        rows.append({"stage": ln.stage, "explainer": ln.explainer, "scorer": ln.scorer, "latents": round(ln.latents),
                     "requests": round(ln.requests), "prompt_tokens": round(ln.prompt_tokens),
                     "completion_tokens": round(ln.completion_tokens), "cost_usd": round(cost, 4)})
    return pl.DataFrame(rows, schema={"stage": pl.Utf8, "explainer": pl.Utf8, "scorer": pl.Utf8, "latents": pl.Int64,
                                      "requests": pl.Int64, "prompt_tokens": pl.Int64, "completion_tokens": pl.Int64,
                                      "cost_usd": pl.Float64})


def _one_partition(ctx, cfg: ProjectConfig, name, layer, first, last, picked, scale, n_latents, exs, windows, line):
    e, s, x = cfg.explainer, cfg.scorer, cfg.scoring
    ecount, scount = prompt_counter(e.llm, ctx.workdir), prompt_counter(cfg.scorer_llm, ctx.workdir)
    stext = _text_counter(cfg.scorer_llm, ctx.workdir)
    steer = {}
    if e.kind in OUTPUT_KINDS:
        rows = ctx.wh.query(queries.RANGE_STEERING_TOKENS, [layer, first, last])
        steer = {r[0]: list(zip(r[1], r[2])) for r in rows.iter_rows()}
    max_tok = max(e.max_tokens, 160) if e.chain_of_thought else e.max_tokens
    ex_line = line("explanations", name, "", e.llm)
    ex_line.latents += n_latents
    free = is_baseline(e.kind)  # a baseline's explanation costs no LLM call
    kinds = list(s.scorers)
    touched: set[str] = set()

    def add(scorer: str, counts: Sequence[int], answers: Sequence[int]) -> None:
        for sc in [scorer] + ([f"{scorer}_control"] if x.control and scorer in x.control_scorers else []):
            touched.add(sc)
            line("scores", name, sc, cfg.scorer_llm).add(scale, counts, answers)
    for lat in picked:
        ex = exs.get(lat) or windows.latent(lat)
        outputs = steer.get(lat) or [(" the", 0.01)] * e.n_output_tokens
        if not free:
            req = explainer_request(e, ex, 1.0, ecount, (), outputs)
            ex_line.add(scale, [ecount(req)], [max_tok])
        job = classifier.ScoreJob(f"{layer}/{lat}", PLACEHOLDER_EXPLANATION, ex.get("test", []),
                               ex.get("non_activating", []))
        for kind in kinds:
            reqs = classifier.scorer_requests([kind], job, s)
            counts = [scount(r) for r in reqs]
            answers = [_answer_tokens(stext, r.messages[-1]["content"].count("\nExample ")) for r in reqs]
            add(kind, counts, answers)
        if "intruder" in x.scorers:
            rounds = intruder.build_rounds(ex.get("test", []), ex.get("non_activating", []), x.intruder_shown,
                                           x.intruder_rounds, s.threshold, f"{x.seed}:{layer}/{lat}")
            add("intruder", [scount(r) for _, r in rounds], [2] * len(rounds))
        if "simulation" in x.scorers:
            shown = _limit(ex.get("test", []), x.simulation_max_examples) + \
                _limit(ex.get("non_activating", []), x.simulation_max_examples)
            logprobs = x.simulation_mode == "logprobs" or (x.simulation_mode == "auto"
                                                           and cfg.scorer_llm.engine == "vllm")
            if logprobs:
                from .llm_runs import _tokenizer

                tok = _tokenizer(cfg.scorer_llm.model, str(ctx.workdir))
                counts = [len(simulation.logprob_prompt(tok, PLACEHOLDER_EXPLANATION, ex_.str_tokens)[0])
                          for ex_ in shown]
                answers = [1] * len(shown)
            else:
                reqs = [simulation.json_request(PLACEHOLDER_EXPLANATION, ex_.str_tokens) for ex_ in shown]
                counts = [scount(r) for r in reqs]
                answers = [stext("[" + ", ".join(["0"] * len(ex_.str_tokens)) + "]") + 1 for ex_ in shown]
            add("simulation", counts, answers)
        if "intervention" in x.scorers:
            pairs = _pairs(ctx, layer, first, last, lat, windows)
            reqs = intervention_requests(InterventionJob(f"{layer}/{lat}", PLACEHOLDER_EXPLANATION, pairs), s)
            counts = [scount(r) for r in reqs]
            answers = [_answer_tokens(stext, r.messages[-1]["content"].count("\nText ")) for r in reqs]
            add("intervention", counts, answers)
    for scorer in touched:
        line("scores", name, scorer, cfg.scorer_llm).latents += n_latents


def _limit(exs: Sequence[Example], n: int | None) -> list[Example]:
    return list(exs) if n is None else list(exs)[:n]
