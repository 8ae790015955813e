"""Intruder scorer (explanation-free): can the scorer LLM spot the one non-activating example among
activating ones? Each round shows ``shown - 1`` activating test examples with their true highlights
(tokens above ``threshold`` x the example's max between << >>) and one non-activating example wearing the
exact highlights of another activating example (so the marks carry no cue), in a seeded random order; the
LLM answers the intruder's number. Score per latent = accuracy over its rounds (chance = 1 / shown). With logprobs, P(intruder's number)
renormalised over the shown numbers is kept per round. Every round of every latent goes to the engine in
one ``generate`` call; a malformed answer fails its round alone.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field
from typing import Sequence

from ..explainers import display_token, highlight
from ..llm.base import ChatRequest, ChatResponse, Sampling
from ..records import Example
from .classifier import true_mask

PROMPT_VERSION = "intruder-v2"  # v2: the intruder wears a held-out activating example's highlights

_SYSTEM = (
    "You look at text examples where a language model latent (a learned feature) fires on the tokens marked "
    "between << and >>. All examples but one share what the latent detects; one is an intruder whose marks "
    "were placed at random. Reply only with the number of the intruder."
)
_FEW_SHOT = (
    "Example 1: We moved to<< Berlin>> in May.\n"
    "Example 2: Flights to<< Madrid>> are cheap.\n"
    "Example 3: The<< function>> returns None.\n"
    "Example 4: She lives in<< Paris>> now.\n\n"
    "Which example is the intruder? Answer with a number from 1 to 4.",
    "3",
)


@dataclass
class IntruderRound:
    intruder_id: int
    correct_index: int  # 1-based place of the intruder in the prompt
    answer: int | None = None  # None = failed round
    probability: float | None = None  # P(correct number), renormalised over the shown numbers

    @property
    def correct(self) -> bool | None:
        return None if self.answer is None else self.answer == self.correct_index


@dataclass
class IntruderScore:
    key: str
    rounds: list[IntruderRound]
    failure_reasons: list[str] = field(default_factory=list)
    responses: list[ChatResponse] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        done = [r.correct for r in self.rounds if r.correct is not None]
        return sum(done) / len(done) if done else None


def _shown(ex: Example, threshold: float) -> str:
    return highlight([display_token(t) for t in ex.str_tokens], list(ex.activations), threshold)


def _copied(ex: Example, donor: Example, threshold: float) -> str:
    """The intruder shown with ``donor``'s highlight pattern: the same marked positions (and so the same count
    and runs), cut to the intruder's length; a donor whose marks all fall beyond it gives its count at the start."""
    full = true_mask(donor, threshold)
    mask = full[:len(ex.str_tokens)]
    if not any(mask):
        k = max(1, min(sum(full), len(ex.str_tokens)))
        mask = [True] * k + [False] * (len(ex.str_tokens) - k)
    return _shown(Example(ex.example_id, ex.str_tokens, tuple(1.0 if m else 0.0 for m in mask), False), 0.5)


def build_rounds(test: Sequence[Example], non_activating: Sequence[Example], shown: int, rounds: int,
                 threshold: float, seed: str) -> list[tuple[IntruderRound, ChatRequest]]:
    """Each round: ``shown - 1`` activating examples and the intruder, which wears the exact highlight pattern of
    one more activating example drawn from the same pool (not shown in that round). The intruder's marks are
    then exchangeable with the shown examples' -- count, runs and positions come from the same distribution --
    so no strategy that looks only at the marks beats chance; only reading the text can."""
    rng = random.Random(seed)
    usable = [ex for ex in test if ex.max_activation > 0]
    if len(usable) < shown - 1 or not non_activating:
        return []
    out = []
    for intruder in list(non_activating)[:rounds]:
        drawn = rng.sample(usable, min(shown, len(usable)))  # the shown examples, then the donor
        picks = drawn[:shown - 1]
        donor = drawn[shown - 1] if len(drawn) == shown else rng.choice(picks)  # a pool of exactly shown - 1
        texts = [_shown(ex, threshold) for ex in picks]
        pos = rng.randrange(shown)
        texts.insert(pos, _copied(intruder, donor, threshold))
        user = "\n".join(f"Example {i}: {t}" for i, t in enumerate(texts, 1))
        user += f"\n\nWhich example is the intruder? Answer with a number from 1 to {shown}."
        msgs = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": _FEW_SHOT[0]},
                {"role": "assistant", "content": _FEW_SHOT[1]}, {"role": "user", "content": user}]
        req = ChatRequest.of(msgs, Sampling(temperature=0.0, max_tokens=3, top_logprobs=min(shown, 20),
                                            regex=f"[1-{shown}]"))
        out.append((IntruderRound(intruder.example_id, pos + 1), req))
    return out


def apply(rnd: IntruderRound, resp: ChatResponse, shown: int) -> str | None:
    if resp.error is not None:
        return f"engine_error: {resp.error[:200]}"
    text = (resp.text or "").strip()
    digits = [c for c in text if c.isdigit()]
    if not digits or not 1 <= int(digits[0]) <= shown:
        return f"parse_error: {text[:40]}"
    rnd.answer = int(digits[0])
    if resp.logprobs:
        first = next((t for t in resp.logprobs if t.token.strip().isdigit()), None)
        if first is not None:
            p = {}
            for tok, lp in {**dict(first.top), first.token: first.logprob}.items():
                t = tok.strip()
                if t.isdigit() and 1 <= int(t) <= shown and lp is not None and not math.isnan(lp):
                    p[int(t)] = p.get(int(t), 0.0) + math.exp(lp)
            total = sum(p.values())
            rnd.probability = p.get(rnd.correct_index, 0.0) / total if total > 0 else None
    return None


def score_intruder(client, keys: Sequence[str], tests: Sequence[Sequence[Example]],
                   non_activating: Sequence[Sequence[Example]], shown: int = 5, rounds: int = 10,
                   threshold: float = 0.3, seed: int = 0) -> list[IntruderScore]:
    built = [build_rounds(t, n, shown, rounds, threshold, f"{seed}:{k}") for k, t, n in zip(keys, tests, non_activating)]
    reqs = [req for b in built for _, req in b]
    resps = asyncio.run(client.generate(reqs)) if reqs else []
    out, k = [], 0
    for key, b in zip(keys, built):
        res = IntruderScore(key, [r for r, _ in b])
        for rnd, _ in b:
            resp = resps[k]
            k += 1
            res.responses.append(resp)
            reason = apply(rnd, resp, shown)
            if reason:
                res.failure_reasons.append(reason)
        out.append(res)
    return out
