"""Classifier scorers (detection, fuzzing): does an explanation let an LLM tell examples apart?

Pure code (no engine, no storage). Differences from delphi, on purpose:
- every batch of every latent goes to the engine in one ``generate`` call (the engine batches them);
- the final partial batch states its own size and is answerable (delphi fails it every time);
- ``fuzzing_active`` (delphi's "active" fuzzing) pairs each activating test example shown with its true
  highlights (truth 1) with the same example highlighted on below-threshold tokens (truth 0);
- fuzzing's fake highlights copy the run pattern of a random activating example and land at random
  positions drawn from a per-latent ``random.Random`` (no global seed, no fixed position-24 token);
- a failed batch (engine error or unparseable answer) leaves its items with ``prediction=None`` and
  is recorded with a reason; it never aborts other batches or latents.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

from ..config import ScorerConfig
from ..explainers import display_token, highlight
from ..llm.base import ChatRequest, ChatResponse, LLMClient, Sampling, TokenLogprob
from ..records import Example

ScorerKind = Literal["detection", "fuzzing", "fuzzing_active"]
SCORER_PROMPT_VERSION = {"detection": "detection-v1", "fuzzing": "fuzzing-v1", "fuzzing_active": "fuzzing-active-v1"}


@dataclass
class ScoreItem:
    example_id: int
    batch_index: int  # which prompt of this latent showed the example
    activating: bool  # the example is an activating (test) example; detection's truth
    highlighted_correctly: bool | None  # fuzzing truth (None for detection)
    truth: bool  # the label the scorer must predict
    prediction: bool | None = None  # None when its batch failed
    probability: float | None = None  # P(1) / (P(0) + P(1)) from logprobs, where available
    quantile: int = -1
    position: int = 0  # 0-based place of the example inside its prompt


@dataclass
class ScorerBatch:
    request: ChatRequest
    items: list[ScoreItem]


@dataclass(frozen=True)
class ScoreJob:
    key: str  # the latent's stable key; also seeds its shuffles and fake highlights
    explanation: str
    test: Sequence[Example]
    non_activating: Sequence[Example]


@dataclass
class ScoreResult:
    key: str
    kind: str
    items: list[ScoreItem]
    n_batches: int
    n_failed_batches: int
    failure_reasons: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float = 0.0  # sum over this latent's requests (they overlap inside the engine)
    responses: list[ChatResponse] = field(default_factory=list)  # one per batch, in batch order (accounting)


# --- prompts (ours) -------------------------------------------------------------------------------

_SYSTEM = {
    "detection": (
        "You check explanations of a language model latent (a learned feature). You get an "
        "explanation of what makes the latent fire and some numbered text examples. For each example, "
        "answer 1 if the latent would fire somewhere in it according to the explanation, otherwise 0. "
        "Reply only with a Python list of 0s and 1s, one per example, in order."
    ),
    "fuzzing": (
        "You check explanations of a language model latent (a learned feature). You get an "
        "explanation of what makes the latent fire and some numbered text examples with some tokens "
        "marked between << and >>. For each example, answer 1 if the marked tokens are exactly the "
        "kind of tokens the explanation describes, otherwise 0. "
        "Reply only with a Python list of 0s and 1s, one per example, in order."
    ),
}

_FEW_SHOT = {
    "detection": [
        (
            "Explanation: Names of cities.\n\n"
            "Example 1: We moved to Berlin in May.\n"
            "Example 2: The function returns None.\n"
            "Example 3: Flights to Madrid are cheap.\n\n"
            "There are 3 examples. Answer with a list of 3 values.",
            "[1, 0, 1]",
        ),
        (
            "Explanation: The keyword \"import\" at the start of a line of code.\n\n"
            "Example 1: The cat sat on the mat.\n"
            "Example 2: import os\n\n"
            "There are 2 examples. Answer with a list of 2 values.",
            "[0, 1]",
        ),
    ],
    "fuzzing": [
        (
            "Explanation: Names of cities.\n\n"
            "Example 1: We moved to<< Berlin>> in May.\n"
            "Example 2: The<< function>> returns None.\n"
            "Example 3: Flights<< to>> Madrid are cheap.\n\n"
            "There are 3 examples. Answer with a list of 3 values.",
            "[1, 0, 0]",
        ),
        (
            "Explanation: The keyword \"import\" at the start of a line of code.\n\n"
            "Example 1: The cat<< sat>> on the mat.\n"
            "Example 2: <<import>> os\n\n"
            "There are 2 examples. Answer with a list of 2 values.",
            "[0, 1]",
        ),
    ],
}


_SYSTEM["fuzzing_active"] = _SYSTEM["fuzzing"]
_FEW_SHOT["fuzzing_active"] = _FEW_SHOT["fuzzing"]


def answer_regex(n: int) -> str:
    """The exact answer format for n examples, e.g. "[1, 0, 1]"."""
    return rf"\[[01](, [01]){{{n - 1}}}\]"


def _user_message(explanation: str, shown: Sequence[str]) -> str:
    n = len(shown)
    lines = [f"Explanation: {explanation}", ""]
    lines += [f"Example {i}: {s}" for i, s in enumerate(shown, 1)]
    noun = "example" if n == 1 else "examples"
    val = "value" if n == 1 else "values"
    lines += ["", f"There {'is' if n == 1 else 'are'} {n} {noun}. Answer with a list of {n} {val}."]
    return "\n".join(lines)


def build_scorer_request(kind: str, explanation: str, shown: Sequence[str], cfg: ScorerConfig) -> ChatRequest:
    n = len(shown)
    messages: list[dict] = [{"role": "system", "content": _SYSTEM[kind]}]
    for user, assistant in _FEW_SHOT[kind]:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    messages.append({"role": "user", "content": _user_message(explanation, shown)})
    sampling = Sampling(
        temperature=cfg.temperature,
        # "[1, 0, 1]" needs about 2 tokens per entry; never let max_tokens cut a long list short
        max_tokens=max(cfg.max_tokens, 3 * n + 4),
        top_logprobs=5 if cfg.logprobs else None,
        regex=answer_regex(n) if cfg.constrained else None,
    )
    return ChatRequest.of(messages, sampling)


# --- fuzzing highlights -----------------------------------------------------------------------------

def _runs(mask: Sequence[bool]) -> list[int]:
    """Lengths of the contiguous True runs of mask, in order."""
    runs, cur = [], 0
    for m in mask:
        if m:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    if cur:
        runs.append(cur)
    return runs


def true_mask(ex: Example, threshold: float) -> list[bool]:
    mx = ex.max_activation
    if mx <= 0:
        return [False] * len(ex.activations)
    return [a > threshold * mx for a in ex.activations]


def fake_mask(length: int, run_lengths: Sequence[int], rng: random.Random) -> list[bool]:
    """A mask with the same highlighted-token count (and, where it fits, the same runs) at random places."""
    k = min(sum(run_lengths), length)
    mask = [False] * length
    if k <= 0 or length == 0:
        return mask
    runs = list(run_lengths)
    rng.shuffle(runs)
    m = len(runs)
    free = length - k
    if sum(runs) == k and free >= m - 1:
        # distribute the free tokens around the m runs, at least one between neighbouring runs
        spare = free - (m - 1)
        picks = sorted(rng.sample(range(spare + m), m))
        for i, (b, r) in enumerate(zip(picks, runs)):
            pos = (b - i) + sum(runs[:i]) + i  # b - i: non-decreasing offsets in [0, spare]
            for j in range(pos, pos + r):
                mask[j] = True
        return mask
    for j in rng.sample(range(length), k):
        mask[j] = True
    return mask


def wrong_mask(true: Sequence[bool], rng: random.Random, tries: int = 20) -> list[bool] | None:
    """A mask with the true mask's run pattern (where it fits) on tokens the true mask leaves out;
    None when every token is highlighted (no wrong highlight exists)."""
    allowed = [i for i, m in enumerate(true) if not m]
    if not allowed:
        return None
    runs = _runs(true) or [1]
    for _ in range(tries):
        mask = fake_mask(len(true), runs, rng)
        if any(mask) and not any(m and t for m, t in zip(mask, true)):
            return mask
    mask = [False] * len(true)
    for j in rng.sample(allowed, min(sum(runs), len(allowed))):
        mask[j] = True
    return mask


def _shown(str_tokens: Sequence[str], mask: Sequence[bool]) -> str:
    toks = [display_token(t) for t in str_tokens]
    return highlight(toks, [1.0 if m else 0.0 for m in mask], 0.5)


# --- batches ------------------------------------------------------------------------------------------

def build_scorer_batches(
    kind: str,
    explanation: str,
    test: Sequence[Example],
    non_activating: Sequence[Example],
    cfg: ScorerConfig,
    rng_key: str,
) -> list[ScorerBatch]:
    """Items for every test and non-activating example, shuffled per latent, in prompts of
    ``cfg.examples_per_prompt`` (the last one may be smaller; its prompt says how many)."""
    if kind not in _SYSTEM:
        raise ValueError(f"unknown scorer kind {kind!r}: use one of {sorted(_SYSTEM)}")
    rng = random.Random(f"{cfg.seed}:{rng_key}")
    entries: list[tuple[ScoreItem, str]] = []
    if kind == "detection":
        for ex in test:
            entries.append((ScoreItem(ex.example_id, -1, True, None, True, quantile=ex.quantile),
                            "".join(display_token(t) for t in ex.str_tokens)))
        for ex in non_activating:
            entries.append((ScoreItem(ex.example_id, -1, False, None, False, quantile=ex.quantile),
                            "".join(display_token(t) for t in ex.str_tokens)))
    elif kind == "fuzzing_active":
        for ex in test:
            mask = true_mask(ex, cfg.threshold)
            entries.append((ScoreItem(ex.example_id, -1, True, True, True, quantile=ex.quantile),
                            _shown(ex.str_tokens, mask)))
            wrong = wrong_mask(mask, rng)
            if wrong is not None:
                entries.append((ScoreItem(ex.example_id, -1, True, False, False, quantile=ex.quantile),
                                _shown(ex.str_tokens, wrong)))
    else:
        masks = [true_mask(ex, cfg.threshold) for ex in test]
        donors = [_runs(m) for m in masks if any(m)] or [[1]]
        for ex, mask in zip(test, masks):
            entries.append((ScoreItem(ex.example_id, -1, True, True, True, quantile=ex.quantile),
                            _shown(ex.str_tokens, mask)))
        for ex in non_activating:
            runs = rng.choice(donors)
            mask = fake_mask(len(ex.str_tokens), runs, rng)
            entries.append((ScoreItem(ex.example_id, -1, False, False, False, quantile=ex.quantile),
                            _shown(ex.str_tokens, mask)))
    rng.shuffle(entries)
    size = cfg.examples_per_prompt
    batches = []
    for b, start in enumerate(range(0, len(entries), size)):
        chunk = entries[start:start + size]
        for pos, (item, _) in enumerate(chunk):
            item.batch_index = b
            item.position = pos
        request = build_scorer_request(kind, explanation, [s for _, s in chunk], cfg)
        batches.append(ScorerBatch(request, [item for item, _ in chunk]))
    return batches


# --- answers --------------------------------------------------------------------------------------------

_LIST_RE = re.compile(r"\[([^\[\]]*)\]")


def parse_scorer_answer(text: str, n: int) -> list[int] | None:
    """The first [...] list in text if it has exactly n entries, each 0 or 1; else None."""
    m = _LIST_RE.search(text or "")
    if m is None:
        return None
    body = m.group(1).strip()
    parts = [p.strip().strip("'\"") for p in body.split(",")] if body else []
    if len(parts) != n or any(p not in ("0", "1") for p in parts):
        return None
    return [int(p) for p in parts]


def _digit(tok: str) -> str:
    return tok.strip().strip("[],").strip()


def probabilities_from_logprobs(logprobs: Sequence[TokenLogprob] | None, n: int) -> list[float] | None:
    """P(1) / (P(0) + P(1)) at each generated "0"/"1" token, from its top alternatives.

    Variants of a digit ("1", " 1", ...) are summed; the chosen token counts even when it is missing
    from its own alternatives. None when the number of digit positions is not n.
    """
    if not logprobs:
        return None
    out: list[float] = []
    for tl in logprobs:
        if _digit(tl.token) not in ("0", "1"):
            continue
        alts = {t: lp for t, lp in tl.top}
        alts.setdefault(tl.token, tl.logprob)
        p = {"0": 0.0, "1": 0.0}
        for t, lp in alts.items():
            d = _digit(t)
            if d in p and lp is not None and not math.isnan(lp):
                p[d] += math.exp(lp)
        total = p["0"] + p["1"]
        out.append(p["1"] / total if total > 0 else float(_digit(tl.token) == "1"))
    return out if len(out) == n else None


def apply_response(batch: ScorerBatch, resp: ChatResponse) -> str | None:
    """Fill the batch's predictions from one response; the failure reason, or None when it worked."""
    n = len(batch.items)
    if resp.error is not None:
        return f"engine_error: {resp.error[:200]}"
    answer = parse_scorer_answer(resp.text, n)
    if answer is None:
        return f"parse_error: {(resp.text or '')[:80]}"
    probs = probabilities_from_logprobs(resp.logprobs, n) if resp.logprobs else None
    for i, item in enumerate(batch.items):
        item.prediction = bool(answer[i])
        item.probability = probs[i] if probs is not None else None
    return None


async def score_latents(
    client: LLMClient, kind: str, jobs: Sequence[ScoreJob], cfg: ScorerConfig
) -> list[ScoreResult]:
    """Score every job with one ``client.generate`` call holding all their batches."""
    return (await score_all(client, [kind], jobs, cfg))[kind]


async def score_all(
    client: LLMClient, kinds: Sequence[str], jobs: Sequence[ScoreJob], cfg: ScorerConfig
) -> dict[str, list[ScoreResult]]:
    """Every kind x job x batch in ONE ``client.generate`` call, so the engine sees all of them at once
    (bounded only by its own capacity); results per kind, in job order."""
    by_kind = {kind: list(jobs) for kind in kinds}
    return await send_all(client, by_kind, build_all(by_kind, cfg))


def build_all(jobs: Mapping[str, Sequence[ScoreJob]], cfg: ScorerConfig) -> dict[str, list[list[ScorerBatch]]]:
    """The batches of every kind's jobs (each kind may score other latents), per kind, in job order."""
    return {kind: [build_scorer_batches(kind, job.explanation, job.test, job.non_activating, cfg, job.key)
                   for job in js] for kind, js in jobs.items()}


async def send_all(client: LLMClient, jobs: Mapping[str, Sequence[ScoreJob]],
                   per: Mapping[str, Sequence[Sequence[ScorerBatch]]]) -> dict[str, list[ScoreResult]]:
    """Send built batches (:func:`build_all`) in ONE ``generate`` call; results per kind, in job order."""
    requests = [b.request for kind in jobs for batches in per[kind] for b in batches]
    responses = await client.generate(requests) if requests else []
    if len(responses) != len(requests):
        raise RuntimeError(f"engine returned {len(responses)} responses for {len(requests)} requests")
    out: dict[str, list[ScoreResult]] = {}
    k = 0
    for kind in jobs:
        results = []
        for job, batches in zip(jobs[kind], per[kind]):
            results.append(gather(job.key, kind, batches, responses[k:k + len(batches)]))
            k += len(batches)
        out[kind] = results
    return out


def gather(key: str, kind: str, batches: Sequence[ScorerBatch], responses: Sequence[ChatResponse]) -> ScoreResult:
    """One latent's result: each batch's answers applied to its items, tokens and failures summed."""
    res = ScoreResult(key, kind, [it for b in batches for it in b.items], len(batches), 0)
    for batch, resp in zip(batches, responses):
        res.responses.append(resp)
        res.prompt_tokens += resp.prompt_tokens
        res.completion_tokens += resp.completion_tokens
        res.cached_tokens += resp.cached_tokens
        res.latency_s += resp.latency_s
        reason = apply_response(batch, resp)
        if reason is not None:
            res.n_failed_batches += 1
            res.failure_reasons.append(reason)
    return res


def scorer_requests(kinds: Sequence[str], job: ScoreJob, cfg: ScorerConfig) -> list[ChatRequest]:
    """The requests one latent would send (to estimate its cost before sending)."""
    return [b.request for kind in kinds
            for b in build_scorer_batches(kind, job.explanation, job.test, job.non_activating, cfg, job.key)]
