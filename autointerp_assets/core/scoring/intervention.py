"""Intervention scorer: does the explanation let the scorer tell a steered continuation from a clean one?

Paulo et al. (arXiv 2410.13928) score an explanation by the effect of intervening on its latent: the
subject model continues neutral prompts with the latent's decoder direction added at a strength calibrated
to a fixed next-token KL (core.steering) and without it. Here the scorer LLM reads the explanation and, for
each prompt, the two continuations in a seeded order (the steered one first for half of the prompts), and
answers which one was written with the latent stimulated: 1 = the first (A), 0 = the second (B). Items and
answers use the detection scorer's machinery (list of 0/1, constrained where the engine can, P(1) from
logprobs), so per latent: balanced accuracy (chance 0.5: an answer that ignores the texts, "always A",
scores exactly 0.5), AUROC, the bootstrap intervals and the random-explanation control like every scorer.
A pair whose continuations came out identical (the intervention did not change the sampled tokens) stays
in: no explanation can tell it apart, which is what the latent's effect on that prompt was.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from ..config import ScorerConfig
from ..explainers import display_token
from ..llm.base import ChatRequest, LLMClient, Sampling
from .classifier import ScoreItem, ScorerBatch, ScoreResult, answer_regex, gather

PROMPT_VERSION = "intervention-v1"

_SYSTEM = (
    "You check explanations of a language model latent (a learned feature). The model continued some texts "
    "twice: once with the latent stimulated, which pushes the continuation towards what the latent stands "
    "for, and once normally. You get the explanation and, for each text, the two continuations A and B in "
    "random order. For each text, answer 1 if A was written with the latent stimulated, 0 if B was. "
    "Reply only with a Python list of 0s and 1s, one per text, in order."
)
_FEW_SHOT = (
    "Explanation: Names of animals, especially dogs and cats.\n\n"
    "Text 1: I think that\n  A: the weather will change soon.\n  B: my dog and the cat\n"
    "Text 2: Here is a\n  A: puppy sleeping next to a kitten\n  B: list of things to do today\n\n"
    "There are 2 texts. Answer with a list of 2 values.",
    "[0, 1]",
)


@dataclass(frozen=True)
class Pair:
    prompt_id: int
    prompt: str
    clean: str
    steered: str


@dataclass(frozen=True)
class InterventionJob:
    key: str  # the latent's stable key: seeds its order of pairs and of A/B (real and control share it)
    explanation: str
    pairs: Sequence[Pair]


def shown(text: str) -> str:
    """A prompt or continuation on one line (control characters escaped, << >> spaced out)."""
    return display_token(text)


def _user_message(explanation: str, entries: Sequence[tuple[str, str, str]]) -> str:
    n = len(entries)
    lines = [f"Explanation: {explanation}", ""]
    for i, (prompt, a, b) in enumerate(entries, 1):
        lines += [f"Text {i}: {shown(prompt)}", f"  A: {shown(a)}", f"  B: {shown(b)}"]
    noun, val = ("text", "value") if n == 1 else ("texts", "values")
    lines += ["", f"There {'is' if n == 1 else 'are'} {n} {noun}. Answer with a list of {n} {val}."]
    return "\n".join(lines)


def build_request(explanation: str, entries: Sequence[tuple[str, str, str]], cfg: ScorerConfig) -> ChatRequest:
    n = len(entries)
    messages = [{"role": "system", "content": _SYSTEM},
                {"role": "user", "content": _FEW_SHOT[0]}, {"role": "assistant", "content": _FEW_SHOT[1]},
                {"role": "user", "content": _user_message(explanation, entries)}]
    sampling = Sampling(temperature=cfg.temperature, max_tokens=max(cfg.max_tokens, 3 * n + 4),
                        top_logprobs=5 if cfg.logprobs else None, regex=answer_regex(n) if cfg.constrained else None)
    return ChatRequest.of(messages, sampling)


def build_batches(job: InterventionJob, cfg: ScorerConfig) -> list[ScorerBatch]:
    """The latent's pairs in a seeded order, the steered continuation first in exactly half of them (rounded
    down), ``cfg.examples_per_prompt`` pairs per request. Item truth = the steered continuation is A."""
    rng = random.Random(f"{cfg.seed}:{job.key}:intervention")
    pairs = list(job.pairs)
    first = [i < len(pairs) // 2 for i in range(len(pairs))]
    rng.shuffle(first)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    size = cfg.examples_per_prompt
    batches = []
    for b, start in enumerate(range(0, len(order), size)):
        chunk = order[start:start + size]
        items, entries = [], []
        for pos, i in enumerate(chunk):
            p, steered_first = pairs[i], first[i]
            items.append(ScoreItem(p.prompt_id, b, steered_first, None, steered_first, position=pos))
            entries.append((p.prompt, p.steered, p.clean) if steered_first else (p.prompt, p.clean, p.steered))
        batches.append(ScorerBatch(build_request(job.explanation, entries, cfg), items))
    return batches


def requests(job: InterventionJob, cfg: ScorerConfig) -> list[ChatRequest]:
    """The requests one latent would send (cost estimates)."""
    return [b.request for b in build_batches(job, cfg)]


async def score_intervention(client: LLMClient, jobs: Sequence[InterventionJob], cfg: ScorerConfig,
                             kind: str = "intervention") -> list[ScoreResult]:
    """Every batch of every job in ONE ``client.generate`` call; one ScoreResult per job, in order."""
    per = [build_batches(job, cfg) for job in jobs]
    reqs = [b.request for batches in per for b in batches]
    responses = await client.generate(reqs) if reqs else []
    if len(responses) != len(reqs):
        raise RuntimeError(f"engine returned {len(responses)} responses for {len(reqs)} requests")
    out, k = [], 0
    for job, batches in zip(jobs, per):
        out.append(gather(job.key, kind, batches, responses[k:k + len(batches)]))
        k += len(batches)
    return out
