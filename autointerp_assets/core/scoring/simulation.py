"""Simulation scorer (OpenAI's "explanations simulate neurons", all-at-once): from the explanation alone,
the scorer LLM predicts each token's activation on a 0-10 scale; score = Pearson's r between the
predictions and the true activations normalised to 0-10 by the latent's max, over all tokens of the
latent's activating and non-activating examples (concatenated, as in the paper).

Two ways to read the predictions:
- ``logprobs`` (vLLM in-process): ONE prompt per example holding the whole listing ``token<TAB>unknown``
  as the assistant's answer; the prediction at each token is the expected value over the values 0..10 of
  the engine's prompt logprobs at the slot after the tab (one forward pass, max_tokens=1, no decoding).
  Where the tokenizer writes "10" as "1", "0" (SmolLM2, Gemma, Llama), a slot whose first token "1" carries
  at least 1 % of its value mass gets one more request -- the prompt up to that slot plus "1" -- whose
  next-token logprobs split P("1") into P(1) and P(10) (:class:`ValueReader`);
- ``json`` (any engine): the LLM writes the list of values, constrained to exactly one integer 0-10 per
  token where the engine can; a malformed answer fails that example alone (recorded, never zero-filled).

vLLM's prompt logprobs are not part of the engine interface, so :func:`prompt_logprobs` drives the
in-process ``VLLMClient``'s own ``llm`` object under its lock (the engine module stays untouched).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..explainers import display_token
from ..llm.base import ChatRequest, ChatResponse, Sampling
from ..records import Example
from .bootstrap import pearson

PROMPT_VERSION = "simulation-v2"  # v2: values 0-10 read whatever the tokenizer does with "10"
PLACEHOLDER = "unknown"

_SYSTEM = (
    "We study a latent (a learned feature) of a language model. It looks for some particular thing in a "
    "short text. Given an explanation of what it looks for, predict how strongly it fires on each token, "
    "from 0 (not at all) to 10 (maximally). Most tokens are 0."
)
_FEW_SHOT_EXPLANATION = "The word \"not\" in negated statements."
_FEW_SHOT = [(" It", 0), (" does", 0), (" not", 10), (" return", 1), (" a", 0), (" value", 0), (".", 0)]
_JSON_NOTE = ("Reply only with a list of {n} integers from 0 to 10, one per token, in order.")


@dataclass
class SimulationScore:
    key: str
    example_ids: list[int]
    activating: list[bool]
    quantiles: list[int]
    true: list[np.ndarray]  # normalised 0-10 true activations per example
    predicted: list[np.ndarray | None]  # None where that example's simulation failed
    correlation: float | None
    failure_reasons: list[str] = field(default_factory=list)
    responses: list[ChatResponse] = field(default_factory=list)  # one per example (accounting)

    @property
    def n_failed(self) -> int:
        return sum(p is None for p in self.predicted)


def _listing(tokens: Sequence[str], values: Sequence[object]) -> str:
    return "".join(f"{display_token(t)}\t{v}\n" for t, v in zip(tokens, values))


def messages(explanation: str, tokens: Sequence[str], json_mode: bool) -> list[dict]:
    """The chat: system, one worked example, then this explanation and (json mode) the token listing."""
    fs_tokens = [t for t, _ in _FEW_SHOT]
    fs_values = [v for _, v in _FEW_SHOT]
    if json_mode:
        user_fs = (f"Explanation: {_FEW_SHOT_EXPLANATION}\nTokens:\n" + "".join(f"{display_token(t)}\n" for t in fs_tokens)
                   + _JSON_NOTE.format(n=len(fs_tokens)))
        answer_fs = "[" + ", ".join(str(v) for v in fs_values) + "]"
        user = (f"Explanation: {explanation}\nTokens:\n" + "".join(f"{display_token(t)}\n" for t in tokens)
                + _JSON_NOTE.format(n=len(tokens)))
    else:
        user_fs = f"Explanation: {_FEW_SHOT_EXPLANATION}\nList each token with its activation."
        answer_fs = _listing(fs_tokens, fs_values)
        user = f"Explanation: {explanation}\nList each token with its activation."
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user_fs},
            {"role": "assistant", "content": answer_fs}, {"role": "user", "content": user}]


def normalised(ex: Example, latent_max: float) -> np.ndarray:
    a = np.asarray(ex.activations, dtype=float)
    return np.clip(a / latent_max * 10, 0, 10) if latent_max > 0 else np.zeros_like(a)


# --- logprob mode (vLLM in-process) ----------------------------------------------------------------

def supports_prompt_logprobs(client) -> bool:
    return getattr(client, "engine", None) == "vllm" and hasattr(client, "llm") and hasattr(client, "tokenizer")


def digit_ids(tok) -> dict[int, int]:
    """token id -> value for every value 0..10 that the tokenizer writes as one token."""
    out = {}
    for v in range(11):
        ids = tok.encode(str(v), add_special_tokens=False)
        if len(ids) == 1:
            out[ids[0]] = v
    return out


@dataclass(frozen=True)
class ValueReader:
    """How the values 0..10 are written in a tokenizer's tokens, and how to read them back from logprobs.

    Most tokenizers of current models split digits ("10" -> "1", "0": SmolLM2, Gemma, Llama), so the first
    token after the tab tells 0..9 apart but not 1 from 10. For a first token that starts several values
    (``ambiguous``), the next token decides: P(10) = P("1") * P("0" | "1") and P(1) = P("1") * P(end | "1"),
    the continuation renormalised over "0" and the non-digit tokens that end a value."""

    first: dict[int, tuple[tuple[int, tuple[int, ...]], ...]]  # first token id -> ((value, rest token ids), ...)
    digit_tokens: frozenset[int]  # ids of tokens that are digits (a value continuing, not ending)

    @staticmethod
    def of(tok) -> "ValueReader":
        first: dict[int, list] = {}
        for v in range(11):
            ids = tuple(tok.encode(str(v), add_special_tokens=False))
            first.setdefault(ids[0], []).append((v, ids[1:]))
        for t, vals in first.items():
            if any(len(rest) > 1 for _, rest in vals):
                raise ValueError(f"the tokenizer writes a value 0-10 in more than two tokens: {vals}")
        digits = frozenset(i for d in "0123456789" for i in tok.encode(d, add_special_tokens=False))
        return ValueReader({t: tuple(v) for t, v in first.items()}, digits)

    def ambiguous(self, token_id: int) -> bool:
        return len(self.first.get(token_id, ())) > 1

    def distribution(self, first: dict[int, float], cont: dict[int, dict[int, float]] | None = None) -> np.ndarray:
        """P(value) for 0..10 (unnormalised) from first-token probabilities and, per ambiguous first token, the
        probabilities of the token after it (``cont``; absent = that first token's one-token value)."""
        p = np.zeros(11)
        for tid, prob in first.items():
            vals = self.first.get(tid)
            if not vals or prob <= 0:
                continue
            if len(vals) == 1 or not cont or tid not in cont:
                short = [v for v, rest in vals if not rest] or [vals[0][0]]
                p[short[0]] += prob
                continue
            nxt = cont[tid]
            end = sum(q for t, q in nxt.items() if t not in self.digit_tokens)
            longer = {v: nxt.get(rest[0], 0.0) for v, rest in vals if rest}
            total = end + sum(longer.values())
            if total <= 0:
                continue
            for v, rest in vals:
                p[v] += prob * ((longer[v] if rest else end) / total)
        return p


def expected_values(positions: list[dict[int, float]], slots: Sequence[int], digits: dict[int, int] | ValueReader,
                    continuations: dict[int, dict[int, dict[int, float]]] | None = None) -> tuple[np.ndarray, int]:
    """E[value] at each slot from the value tokens among its alternatives (renormalised over the values 0..10),
    and how many slots had no value token at all among them (those predict 0: the LLM saw no value to give).

    ``digits``: a ValueReader, or {token id: value} for a tokenizer that writes every value as one token.
    ``continuations``: slot index j -> {ambiguous first token id -> {next token id: probability}} (logprob
    dicts of the next position), for values written in two tokens ("10" = "1", "0")."""
    reader = digits if isinstance(digits, ValueReader) else \
        ValueReader({t: ((v, ()),) for t, v in digits.items()}, frozenset())
    out = np.zeros(len(slots))
    missing = 0
    for j, s in enumerate(slots):
        pos = positions[s] if s < len(positions) else {}
        first = {tid: float(np.exp(lp)) for tid, lp in pos.items() if tid in reader.first}
        cont = {t: {k: float(np.exp(lp)) for k, lp in d.items()} for t, d in (continuations or {}).get(j, {}).items()}
        p = reader.distribution(first, cont)
        if p.sum() <= 0:
            missing += 1
            continue
        out[j] = float(p @ np.arange(11) / p.sum())
    return out, missing


def logprob_prompt(tok, explanation: str, tokens: Sequence[str]) -> tuple[list[int], list[int]]:
    """Token ids of the prompt (answer listing included) and the index of each token's value slot."""
    chat = tok.apply_chat_template(messages(explanation, tokens, json_mode=False), add_generation_prompt=True,
                                   tokenize=False)
    ids = tok.encode(chat, add_special_tokens=False)
    slots = []
    for t in tokens:
        ids += tok.encode(f"{display_token(t)}\t", add_special_tokens=False)
        slots.append(len(ids))
        ids += tok.encode(f"{PLACEHOLDER}\n", add_special_tokens=False)
    return ids, slots


def _engine_logprobs(client, prompts: Sequence[list[int]], params, read) -> list:
    """One batched call on the in-process engine (under its lock, like generate()): ``read(output)`` per prompt,
    or an error string for that prompt alone."""
    out: list = [None] * len(prompts)
    with client._lock:
        ids = {}
        for i, p in enumerate(prompts):
            try:
                (rid,) = client.llm.enqueue({"prompt_token_ids": list(p)}, params, use_tqdm=False)
                ids[rid.split("-", 1)[0]] = i
            except Exception as e:  # too long etc.: this prompt only
                out[i] = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        results = client.llm.wait_for_completion(use_tqdm=False) if ids else []
    for r in results:
        i = ids.get(r.request_id)
        if i is not None:
            out[i] = read(r)
    return [o if o is not None else "RuntimeError: no output for this prompt" for o in out]


def prompt_logprobs(client, prompts: Sequence[list[int]], top: int) -> list[list[dict[int, float]] | str]:
    """Per prompt: per position, {token id: logprob} of the engine's top alternatives (and the actual token),
    or an error string for that prompt alone."""
    from vllm import SamplingParams

    return _engine_logprobs(client, prompts, SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=top),
                            lambda r: [{t: lp.logprob for t, lp in pos.items()} if pos else {}
                                       for pos in (r.prompt_logprobs or [])])


def next_token_logprobs(client, prompts: Sequence[list[int]], top: int) -> list[dict[int, float] | str]:
    """Per prompt: {token id: logprob} of the engine's top alternatives for the token after it (generation
    requests, so the engine's prefix cache serves the shared prefixes), or an error string."""
    from vllm import SamplingParams

    def read(r):
        lps = r.outputs[0].logprobs if r.outputs else None
        return {t: lp.logprob for t, lp in lps[0].items()} if lps else {}

    return _engine_logprobs(client, prompts, SamplingParams(temperature=0.0, max_tokens=1, logprobs=top), read)


CONTINUATION_MIN = 0.01  # an ambiguous first token below this share of a slot's value mass is read as its
                         # one-token value (e.g. "1" as 1, not 10): at most 0.09 of error on the 0-10 scale


def _simulate_logprobs(client, jobs, top: int) -> list[list[tuple[np.ndarray | None, str | None, ChatResponse]]]:
    tok = client.tokenizer
    reader = ValueReader.of(tok)
    flat, where = [], []
    for j, (explanation, exs) in enumerate(jobs):
        for e, ex in enumerate(exs):
            flat.append(logprob_prompt(tok, explanation, ex.str_tokens))
            where.append((j, e))
    reserve = getattr(client, "reserve_counts", None)  # a write-ahead ledger records them before they run
    if reserve is not None and flat:
        reserve([len(ids) for ids, _ in flat])
    t0 = time.perf_counter()
    res = prompt_logprobs(client, [ids for ids, _ in flat], top) if flat else []
    # second pass, only for tokenizers that write a value in two tokens: the token after an ambiguous first one
    asks, conts = [], [{} for _ in flat]
    for k, ((ids, slots), r) in enumerate(zip(flat, res)):
        if isinstance(r, str):
            continue
        for j, s in enumerate(slots):
            pos = r[s] if s < len(r) else {}
            mass = {t: float(np.exp(lp)) for t, lp in pos.items() if t in reader.first}
            total = sum(mass.values())
            for t, m in mass.items():
                if reader.ambiguous(t) and total > 0 and m / total >= CONTINUATION_MIN:
                    asks.append((k, j, t, ids[:s] + [t]))
    extra = next_token_logprobs(client, [a[3] for a in asks], top) if asks else []
    failed_cont = [0] * len(flat)
    for (k, j, t, _), d in zip(asks, extra):
        if isinstance(d, str):
            failed_cont[k] += 1
            continue
        conts[k].setdefault(j, {})[t] = d
    latency = time.perf_counter() - t0
    n_extra = [0] * len(flat)
    for k, _, _, ids in asks:
        n_extra[k] += 1
    out = [[None] * len(exs) for _, exs in jobs]
    for k, ((ids, slots), r, (j, e)) in enumerate(zip(flat, res, where)):
        if isinstance(r, str):
            out[j][e] = (None, f"engine_error: {r}", ChatResponse(error=r, prompt_tokens=len(ids), latency_s=latency))
            continue
        resp = ChatResponse(prompt_tokens=len(ids) + sum(len(a[3]) for a in asks if a[0] == k),
                            completion_tokens=1 + n_extra[k], latency_s=latency)
        if failed_cont[k]:
            out[j][e] = (None, f"engine_error: {failed_cont[k]} value continuations failed", resp)
            continue
        ev, missing = expected_values(r, slots, reader, conts[k])
        bad = missing == len(slots)  # not one slot read as a value: a failed simulation, not all zeros
        out[j][e] = (None if bad else ev, "no digit among the prompt logprobs" if bad else None, resp)
    return out


# --- json mode (any engine) -------------------------------------------------------------------------

def answer_regex(n: int) -> str:
    return rf"\[(10|[0-9])(, (10|[0-9])){{{n - 1}}}\]"


_INT_LIST = re.compile(r"\[([^\[\]]*)\]")


def parse_values(text: str, n: int) -> np.ndarray | None:
    m = _INT_LIST.search(text or "")
    if m is None:
        return None
    try:
        vals = [int(x) for x in m.group(1).split(",")] if m.group(1).strip() else []
    except ValueError:
        return None
    if len(vals) != n or any(v < 0 or v > 10 for v in vals):
        return None
    return np.asarray(vals, dtype=float)


def json_request(explanation: str, tokens: Sequence[str]) -> ChatRequest:
    n = len(tokens)
    return ChatRequest.of(messages(explanation, tokens, json_mode=True),
                          Sampling(temperature=0.0, max_tokens=4 * n + 8, regex=answer_regex(n)))


def _simulate_json(client, jobs) -> list[list[tuple[np.ndarray | None, str | None, ChatResponse]]]:
    reqs = [json_request(explanation, ex.str_tokens) for explanation, exs in jobs for ex in exs]
    resps = asyncio.run(client.generate(reqs)) if reqs else []
    out, k = [], 0
    for _, exs in jobs:
        row = []
        for ex in exs:
            r = resps[k]
            k += 1
            if r.error is not None:
                row.append((None, f"engine_error: {r.error[:200]}", r))
                continue
            v = parse_values(r.text, len(ex.str_tokens))
            row.append((v, None if v is not None else f"parse_error: {(r.text or '')[:80]}", r))
        out.append(row)
    return out


def resolve_mode(mode: str, client) -> str:
    if mode == "auto":
        return "logprobs" if supports_prompt_logprobs(client) else "json"
    if mode == "logprobs" and not supports_prompt_logprobs(client):
        raise ValueError("scoring.simulation_mode 'logprobs' needs the in-process vLLM engine (prompt "
                         "logprobs): use engine vllm, or simulation_mode json / auto")
    return mode


def score_simulation(client, keys: Sequence[str], explanations: Sequence[str], examples: Sequence[Sequence[Example]],
                     mode: str = "auto", top_logprobs: int = 20) -> list[SimulationScore]:
    """One SimulationScore per latent; ``examples[i]`` = latent i's activating + non-activating examples.
    Every example of every latent goes to the engine in one batch."""
    mode = resolve_mode(mode, client)
    jobs = list(zip(explanations, examples))
    sims = _simulate_logprobs(client, jobs, top_logprobs) if mode == "logprobs" else _simulate_json(client, jobs)
    out = []
    for key, exs, row in zip(keys, examples, sims):
        latent_max = max((ex.max_activation for ex in exs), default=0.0)
        true = [normalised(ex, latent_max) for ex in exs]
        pred = [p for p, _, _ in row]
        ok = [i for i, p in enumerate(pred) if p is not None]
        r = pearson(np.concatenate([true[i] for i in ok]), np.concatenate([pred[i] for i in ok])) if ok else None
        out.append(SimulationScore(key, [ex.example_id for ex in exs], [ex.activating for ex in exs],
                                   [ex.quantile for ex in exs], true, pred, r,
                                   [reason for _, reason, _ in row if reason], [resp for _, _, resp in row]))
    return out
