"""Intruder rounds: layout, answers, accuracy (an answering client that knows / ignores the intruder)."""

from __future__ import annotations

import random
import re

import numpy as np

from autointerp_assets.core.llm.base import ChatResponse, TokenLogprob
from autointerp_assets.core.records import Example
from autointerp_assets.core.scoring import intruder


def _latent():
    test = [Example(i, (" a", " city", " b", " c"), (0, 5.0 + i, 0, 0), True, i % 2) for i in range(8)]
    non = [Example(100 + i, (" x", " y", " z", " w"), (0, 0, 0, 0), False, -1) for i in range(6)]
    return test, non


def test_rounds_put_one_intruder_at_a_recorded_place():
    test, non = _latent()
    rounds = intruder.build_rounds(test, non, shown=4, rounds=5, threshold=0.3, seed="s")
    assert len(rounds) == 5
    for rnd, req in rounds:
        lines = [ln for ln in req.messages[-1]["content"].split("\n") if ln.startswith("Example ")]
        assert len(lines) == 4
        odd = [i + 1 for i, ln in enumerate(lines) if " x" in ln]
        assert odd == [rnd.correct_index]
        assert all("<<" in ln for ln in lines)  # the intruder is marked too (another activating example's marks)
        assert req.sampling.regex == "[1-4]"
    again = intruder.build_rounds(test, non, shown=4, rounds=5, threshold=0.3, seed="s")
    assert [r.correct_index for r, _ in again] == [r.correct_index for r, _ in rounds]
    assert intruder.build_rounds(test[:2], non, shown=4, rounds=5, threshold=0.3, seed="s") == []


class Answers:
    engine, model = "openai", "test"

    def __init__(self, know: bool):
        self.know = know

    async def generate(self, requests):
        out = []
        for r in requests:
            lines = [ln for ln in r.messages[-1]["content"].split("\n") if ln.startswith("Example ")]
            right = next(i + 1 for i, ln in enumerate(lines) if " x" in ln)
            ans = right if self.know else 1
            lps = [TokenLogprob(str(ans), -0.1, ((str(ans), -0.1), (str(right % 4 + 1), -2.4)))]
            out.append(ChatResponse(text=str(ans), logprobs=lps))
        return out


def test_accuracy_is_one_when_the_intruder_is_always_found_and_chance_when_not():
    test, non = _latent()
    (s,) = intruder.score_intruder(Answers(True), ["l/0"], [test], [non], shown=4, rounds=6, seed=1)
    assert s.accuracy == 1.0 and not s.failure_reasons
    assert all(r.probability > 0.8 for r in s.rounds)
    (d,) = intruder.score_intruder(Answers(False), ["l/0"], [test], [non], shown=4, rounds=6, seed=1)
    assert d.accuracy == sum(r.correct_index == 1 for r in d.rounds) / 6


def test_unparseable_answer_fails_its_round_only():
    rnd = intruder.IntruderRound(5, 2)
    assert intruder.apply(rnd, ChatResponse(text="seven"), 4).startswith("parse_error")
    assert rnd.correct is None
    assert intruder.apply(rnd, ChatResponse(error="boom"), 4).startswith("engine_error")
    assert intruder.apply(rnd, ChatResponse(text="2"), 4) is None and rnd.correct is True


class ShapeReader:
    """A scorer that never reads the text: it answers from the highlight marks alone (``strategy``), ties broken
    at random (seeded)."""

    engine, model = "openai", "shape"

    def __init__(self, strategy: str):
        self.strategy, self.rng = strategy, random.Random(0)

    def score(self, line: str) -> float:
        marks = re.findall(r"<<(.*?)>>", line)
        n_tokens = sum(len(m.split(" ")) - (1 if m.startswith(" ") else 0) for m in marks)
        if self.strategy == "most_highlighted":
            return n_tokens
        if self.strategy == "one_run":  # the old intruder's marks were always a single contiguous run
            return float(len(marks) == 1)
        return -line.index("<<")  # "earliest_mark"

    async def generate(self, requests):
        out = []
        for r in requests:
            lines = [ln for ln in r.messages[-1]["content"].split("\n") if ln.startswith("Example ")]
            scores = [self.score(ln) for ln in lines]
            best = [i + 1 for i, s in enumerate(scores) if s == max(scores)]
            out.append(ChatResponse(text=str(self.rng.choice(best))))
        return out


def _varied_latent(rng: np.random.Generator, k: int):
    """Activating examples with 1-6 highlighted tokens in 1-3 runs at varied places; silent negatives."""
    test = []
    for i in range(20):
        acts = np.zeros(16)
        for _ in range(rng.integers(1, 4)):
            start = rng.integers(0, 14)
            acts[start:start + rng.integers(1, 3)] = rng.uniform(2, 9)
        test.append(Example(k * 1000 + i, tuple(f" t{j}" for j in range(16)), tuple(acts.tolist()), True, i % 5))
    non = [Example(k * 1000 + 500 + i, tuple(f" n{j}" for j in range(16)), (0.0,) * 16, False, -1) for i in range(10)]
    return test, non


def test_a_strategy_that_reads_only_the_highlights_is_at_chance():
    """Known answer: the intruder's marks are another activating example's, so counting marks, preferring one run
    or the earliest mark picks the intruder 1 time in 5 (5 shown): over 10,000 rounds of 1,000 latents, within
    3 standard errors (rounds of one latent share its examples, so the error is taken over latents)."""
    import asyncio

    rng = np.random.default_rng(0)
    latents = [_varied_latent(rng, k) for k in range(1000)]
    for strategy in ("most_highlighted", "one_run", "earliest_mark"):
        res = intruder.score_intruder(ShapeReader(strategy), [f"l/{k}" for k in range(1000)],
                                      [t for t, _ in latents], [n for _, n in latents], shown=5, rounds=10, seed=3)
        per_latent = np.array([s.accuracy for s in res])
        acc, se = per_latent.mean(), per_latent.std(ddof=1) / np.sqrt(len(per_latent))
        assert sum(len(s.rounds) for s in res) == 10_000
        assert abs(acc - 0.2) < 3 * se and se < 0.006, (strategy, acc, se)
    # every intruder wears exactly the marks of an activating example of its latent that its round does not show
    test, non = latents[0]
    for rnd, req in intruder.build_rounds(test, non, 5, 10, 0.3, "x"):
        lines = [ln for ln in req.messages[-1]["content"].split("\n") if ln.startswith("Example ")]
        marks = lambda ln: [m.start() for m in re.finditer("<<", ln.split(": ", 1)[-1])]  # noqa: E731
        worn = tuple(marks(lines[rnd.correct_index - 1]))
        pool = {tuple(marks(intruder._shown(ex, 0.3).replace(" t", " n"))) for ex in test}
        assert worn in pool
    assert asyncio.iscoroutinefunction(ShapeReader.generate)
