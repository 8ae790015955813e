"""Intruder rounds: layout, answers, accuracy (an answering client that knows / ignores the intruder)."""

from __future__ import annotations

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
        assert all("<<" in ln for ln in lines)  # the intruder is marked too (as many tokens, random place)
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
