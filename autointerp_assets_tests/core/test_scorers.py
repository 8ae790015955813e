import asyncio
import math
import random
import re

import pytest

from autointerp_assets.core.config import ScorerConfig
from autointerp_assets.core.llm.base import ChatResponse, TokenLogprob
from autointerp_assets.core.records import Example
from autointerp_assets.core.scoring.classifier import (
    SCORER_PROMPT_VERSION,
    ScoreJob,
    answer_regex,
    build_scorer_batches,
    fake_mask,
    parse_scorer_answer,
    probabilities_from_logprobs,
    score_all,
    score_latents,
    scorer_requests,
    true_mask,
    wrong_mask,
)


def _pos(i, hot, length=16, q=0):
    acts = [0.0] * length
    for j, a in hot.items():
        acts[j] = a
    return Example(i, tuple(f" t{i}_{j}" for j in range(length)), tuple(acts), True, q)


def _neg(i, length=16):
    return Example(i, tuple(f" n{i}_{j}" for j in range(length)), (0.0,) * length, False, -1)


def _data(n_pos=7, n_neg=6):
    # highlight counts (threshold 0.3): one run of 1, one run of 2, two runs (1 + 1)
    patterns = [{3: 5.0}, {3: 5.0, 4: 4.0, 9: 1.0}, {2: 5.0, 10: 3.0}]
    test = [_pos(i, patterns[i % 3], q=i % 10) for i in range(n_pos)]
    neg = [_neg(100 + i) for i in range(n_neg)]
    return test, neg


def _user(batch):
    return batch.request.messages[-1]["content"]


def _example_lines(batch):
    return [l for l in _user(batch).split("\n") if l.startswith("Example ")]


def test_versions():
    assert SCORER_PROMPT_VERSION == {"detection": "detection-v1", "fuzzing": "fuzzing-v1",
                                     "fuzzing_active": "fuzzing-active-v1"}


@pytest.mark.parametrize("kind", ["detection", "fuzzing"])
def test_batches_cover_every_item_once_and_final_partial(kind):
    test, neg = _data(7, 6)  # 13 items, 5 per prompt -> 5, 5, 3
    cfg = ScorerConfig()
    batches = build_scorer_batches(kind, "Some explanation.", test, neg, cfg, "layers.6:12")
    assert [len(b.items) for b in batches] == [5, 5, 3]
    ids = [it.example_id for b in batches for it in b.items]
    assert sorted(ids) == sorted([e.example_id for e in test + neg])
    for bi, b in enumerate(batches):
        n = len(b.items)
        assert [it.batch_index for it in b.items] == [bi] * n
        assert [it.position for it in b.items] == list(range(n))
        assert all(it.prediction is None and it.probability is None for it in b.items)
        user = _user(b)
        assert user.startswith("Explanation: Some explanation.\n")
        assert len(_example_lines(b)) == n
        assert f"list of {n} value" in user
        s = b.request.sampling
        assert s.temperature == 0 and s.top_logprobs == 5
        assert s.regex == answer_regex(n)
        assert s.max_tokens >= cfg.max_tokens
        assert b.request.prefill == ""
        assert b.request.messages[0]["role"] == "system"
        assert any(m["role"] == "assistant" for m in b.request.messages)
    assert re.fullmatch(batches[-1].request.sampling.regex, "[1, 0, 1]")
    assert not re.fullmatch(batches[-1].request.sampling.regex, "[1, 0, 1, 1]")
    truth = {it.example_id: it for b in batches for it in b.items}
    for e in test:
        assert truth[e.example_id].truth is True and truth[e.example_id].activating is True
        assert truth[e.example_id].quantile == e.quantile
    for e in neg:
        assert truth[e.example_id].truth is False and truth[e.example_id].activating is False


def test_detection_has_no_highlights_and_options():
    test, neg = _data()
    cfg = ScorerConfig(logprobs=False, constrained=False, examples_per_prompt=4)
    batches = build_scorer_batches("detection", "x", test, neg, cfg, "k")
    assert [len(b.items) for b in batches] == [4, 4, 4, 1]
    assert "There is 1 example. Answer with a list of 1 value." in _user(batches[-1])
    for b in batches:
        assert "<<" not in _user(b) and ">>" not in _user(b)
        assert b.request.sampling.regex is None and b.request.sampling.top_logprobs is None
        assert all(it.highlighted_correctly is None for it in b.items)
    assert answer_regex(1) == r"\[[01](, [01]){0}\]"
    assert re.fullmatch(answer_regex(1), "[0]")


def _highlighted_tokens(line):
    return sum(len(re.findall(r" [tn]\d+_\d+", run)) for run in re.findall(r"<<(.*?)>>", line))


def test_fuzzing_highlights():
    test, neg = _data(9, 30)
    batches = build_scorer_batches("fuzzing", "x", test, neg, ScorerConfig(), "layers.6:3")
    by_id = {}
    for b in batches:
        for it, line in zip(b.items, _example_lines(b)):
            by_id[it.example_id] = (it, line.split(": ", 1)[1])
    real_counts = {1, 3, 2}
    for e in test:
        it, line = by_id[e.example_id]
        assert it.highlighted_correctly is True and it.truth is True
        # true tokens only: above 0.3 * the example's max
        expected = [j for j, a in enumerate(e.activations) if a > 0.3 * e.max_activation]
        marked = [int(t.split("_")[1]) for run in re.findall(r"<<(.*?)>>", line) for t in run.split()]
        assert marked == expected
    fake_counts = []
    for e in neg:
        it, line = by_id[e.example_id]
        assert it.highlighted_correctly is False and it.truth is False
        c = _highlighted_tokens(line)
        assert c >= 1
        fake_counts.append(c)
        assert "".join(line.replace("<<", "").replace(">>", "")) == "".join(e.str_tokens)
    assert set(fake_counts) <= real_counts
    assert len(set(fake_counts)) > 1  # donors are drawn at random
    # not a fixed position: the fake highlights start at many different tokens
    starts = {line.index("<<") for e in neg for _, line in [by_id[e.example_id]]}
    assert len(starts) > 3


def test_fuzzing_without_any_true_highlight_uses_one_fake_token():
    test = [_pos(0, {})]  # activating but all zeros: nothing to copy
    neg = [_neg(1)]
    b = build_scorer_batches("fuzzing", "x", test, neg, ScorerConfig(), "k")[0]
    lines = dict(zip([it.example_id for it in b.items], _example_lines(b)))
    assert _highlighted_tokens(lines[1]) == 1
    assert "<<" not in lines[0]


def test_fake_mask():
    rng = random.Random(0)
    for _ in range(200):
        runs = [rng.randint(1, 4) for _ in range(rng.randint(1, 4))]
        m = fake_mask(32, runs, rng)
        assert sum(m) == sum(runs)
        # same run structure when it fits
        got, cur = [], 0
        for x in m + [False]:
            if x:
                cur += 1
            elif cur:
                got.append(cur)
                cur = 0
        assert sorted(got) == sorted(runs)
    assert sum(fake_mask(3, [5], rng)) == 3  # capped at the length
    assert fake_mask(0, [1], rng) == []
    assert sum(fake_mask(5, [2, 2, 2], rng)) == 5  # does not fit with gaps: capped, scattered


def test_determinism():
    test, neg = _data(10, 10)
    cfg = ScorerConfig()

    def sig(key):
        bs = build_scorer_batches("fuzzing", "x", test, neg, cfg, key)
        return [(b.request, [it.example_id for it in b.items]) for b in bs]

    assert sig("layers.6:1") == sig("layers.6:1")
    assert sig("layers.6:1") != sig("layers.6:2")
    other_seed = build_scorer_batches("fuzzing", "x", test, neg, ScorerConfig(seed=7), "layers.6:1")
    assert [(b.request, [it.example_id for it in b.items]) for b in other_seed] != sig("layers.6:1")


def test_unknown_kind():
    with pytest.raises(ValueError):
        build_scorer_batches("simulation", "x", [], [], ScorerConfig(), "k")


def test_parse_scorer_answer():
    assert parse_scorer_answer("[1, 0, 1]", 3) == [1, 0, 1]
    assert parse_scorer_answer("Answer: [0,1]\nthen [1, 1]", 2) == [0, 1]
    assert parse_scorer_answer("[ 1 ,0 ]", 2) == [1, 0]
    assert parse_scorer_answer("['1', \"0\"]", 2) == [1, 0]
    assert parse_scorer_answer("[1, 0, 1]", 2) is None  # wrong length
    assert parse_scorer_answer("[1, 2]", 2) is None  # not 0/1
    assert parse_scorer_answer("[1, 0.5]", 2) is None
    assert parse_scorer_answer("1, 0", 2) is None  # no list
    assert parse_scorer_answer("[]", 1) is None
    assert parse_scorer_answer("", 1) is None
    assert parse_scorer_answer("[1, 0", 2) is None


def _tl(token, lp, top=()):
    return TokenLogprob(token, lp, tuple(top))


def test_probabilities_from_logprobs():
    a, b = -0.1, -2.3
    lps = [
        _tl("[", -0.01, [("[", -0.01)]),
        _tl("1", a, [("1", a), ("0", b)]),
        _tl(",", -0.01),
        _tl(" 0", a, [(" 0", a), (" 1", b), ("1", b), ("x", -1.0)]),  # variants of "1" summed
        _tl("]", -0.01),
    ]
    p = probabilities_from_logprobs(lps, 2)
    ea, eb = math.exp(a), math.exp(b)
    assert p[0] == pytest.approx(ea / (ea + eb))
    assert p[1] == pytest.approx(2 * eb / (ea + 2 * eb))
    assert probabilities_from_logprobs(lps, 3) is None  # count mismatch
    assert probabilities_from_logprobs([], 1) is None
    assert probabilities_from_logprobs(None, 1) is None
    # chosen token missing from its own alternatives still counts
    p = probabilities_from_logprobs([_tl("1", a, [("0", b)])], 1)
    assert p[0] == pytest.approx(ea / (ea + eb))
    # no alternatives at all: certain
    assert probabilities_from_logprobs([_tl("0", -0.5)], 1) == [0.0]
    # a merged "[1" token still counts as a digit
    p = probabilities_from_logprobs([_tl("[1", a, [("[1", a), ("[0", b)])], 1)
    assert p[0] == pytest.approx(ea / (ea + eb))


class ScriptedClient:
    """Scripted stand-in for an LLM engine (deterministic parsing/accounting checks only).

    Answers each request from a script keyed by the request's last user message.
    """

    engine = "scripted"
    model = "scripted"

    def __init__(self, script):
        self.script = script  # user message -> ChatResponse
        self.calls = []

    def identity(self):
        return {"engine": self.engine, "model": self.model}

    async def generate(self, requests):
        self.calls.append(list(requests))
        return [self.script[r.messages[-1]["content"]] for r in requests]

    def close(self):
        pass


def _answer_logprobs(bits, good=-0.1, bad=-2.3):
    out = [_tl("[", -0.01)]
    for i, b in enumerate(bits):
        if i:
            out.append(_tl(",", -0.01))
        sp = " " if i else ""
        d, o = (sp + "1", sp + "0") if b else (sp + "0", sp + "1")
        out.append(_tl(d, good, [(d, good), (o, bad)]))
    out.append(_tl("]", -0.01))
    return out


def test_score_latents_scripted():
    cfg = ScorerConfig()
    test, neg = _data(7, 6)  # 13 items -> batches of 5, 5, 3
    jobs = [ScoreJob("L1", "expl one", test, neg), ScoreJob("L2", "expl two", test[:3], neg[:2])]
    b1 = build_scorer_batches("detection", "expl one", test, neg, cfg, "L1")
    b2 = build_scorer_batches("detection", "expl two", test[:3], neg[:2], cfg, "L2")
    assert [len(b.items) for b in b1] == [5, 5, 3] and len(b2) == 1
    truth0 = [int(it.truth) for it in b1[0].items]
    script = {
        _user(b1[0]): ChatResponse(text=str(truth0),
                                   prompt_tokens=100, completion_tokens=10, cached_tokens=50, latency_s=0.5,
                                   logprobs=_answer_logprobs(truth0)),
        _user(b1[1]): ChatResponse(text="I think all of them are [1, 1]", prompt_tokens=101,
                                   completion_tokens=11, latency_s=0.25),
        _user(b1[2]): ChatResponse(error="timeout after 6 retries"),
        _user(b2[0]): ChatResponse(text="[1, 1, 1, 0, 0]", prompt_tokens=7, completion_tokens=3),
    }
    client = ScriptedClient(script)
    results = asyncio.run(score_latents(client, "detection", jobs, cfg))
    assert len(client.calls) == 1 and len(client.calls[0]) == 4  # all batches of all latents at once

    r1, r2 = results
    assert (r1.key, r1.kind, r1.n_batches, r1.n_failed_batches) == ("L1", "detection", 3, 2)
    assert r1.failure_reasons == ["parse_error: I think all of them are [1, 1]", "engine_error: timeout after 6 retries"]
    assert (r1.prompt_tokens, r1.completion_tokens, r1.cached_tokens) == (201, 21, 50)
    assert r1.latency_s == pytest.approx(0.75)
    assert len(r1.items) == 13
    ok = [it for it in r1.items if it.batch_index == 0]
    assert [int(it.prediction) for it in ok] == truth0
    for it in ok:
        assert it.probability == pytest.approx(
            (math.exp(-0.1) if it.truth else math.exp(-2.3)) / (math.exp(-0.1) + math.exp(-2.3)))
    assert all(it.prediction is None and it.probability is None for it in r1.items if it.batch_index > 0)

    assert (r2.n_batches, r2.n_failed_batches, r2.failure_reasons) == (1, 0, [])
    assert [it.prediction for it in r2.items] == [True, True, True, False, False]
    assert all(it.probability is None for it in r2.items)  # no logprobs returned


def test_score_latents_empty():
    client = ScriptedClient({})
    assert asyncio.run(score_latents(client, "fuzzing", [], ScorerConfig())) == []
    res = asyncio.run(score_latents(client, "fuzzing", [ScoreJob("k", "x", [], [])], ScorerConfig()))
    assert res[0].n_batches == 0 and res[0].items == []


def _marked(line: str) -> list[str]:
    return re.findall(r"<<(.*?)>>", line)


def test_fuzzing_active_pairs_true_and_wrong_highlights_of_activating_examples():
    test, neg = _data(7, 6)
    batches = build_scorer_batches("fuzzing_active", "x", test, neg, ScorerConfig(examples_per_prompt=5), "k")
    items = [it for b in batches for it in b.items]
    # every activating test example twice (right + wrong highlights); non-activating examples unused
    assert sorted(it.example_id for it in items) == sorted([ex.example_id for ex in test] * 2)
    assert all(it.activating for it in items)
    assert sum(it.truth for it in items) == 7 and sum(not it.truth for it in items) == 7
    by_id = {ex.example_id: ex for ex in test}
    for b in batches:
        for it, line in zip(b.items, _example_lines(b)):
            ex = by_id[it.example_id]
            hot = {ex.str_tokens[j] for j, m in enumerate(true_mask(ex, 0.3)) if m}
            marked = set("".join(_marked(line)).replace(" t", "| t").split("|")) - {""}
            if it.truth:
                assert marked == hot, line
            else:  # same number of marked tokens, none of them above the threshold
                assert marked and not (marked & hot) and len(marked) == len(hot), line


def test_wrong_mask_edge_cases():
    rng = random.Random(0)
    assert wrong_mask([True, True], rng) is None  # nothing left to highlight wrongly
    for _ in range(20):
        m = wrong_mask([False, True, True, False, False, False], rng)
        assert sum(m) == 2 and not (m[1] or m[2])


def test_score_all_sends_every_kind_in_one_call_and_keeps_responses():
    cfg = ScorerConfig(examples_per_prompt=5, temperature=0.7)
    test, neg = _data(4, 4)
    jobs = [ScoreJob("A", "one", test, neg), ScoreJob("B", "two", test[:2], neg[:1])]
    kinds = ["detection", "fuzzing", "fuzzing_active"]
    reqs = [r for j in jobs for r in scorer_requests(kinds, j, cfg)]
    assert all(r.sampling.temperature == 0.7 for r in reqs)
    script = {r.messages[-1]["content"]: ChatResponse(text="[" + ", ".join(["1"] * int(
        re.search(r"list of (\d+)", r.messages[-1]["content"]).group(1))) + "]", prompt_tokens=3) for r in reqs}
    client = ScriptedClient(script)
    out = asyncio.run(score_all(client, kinds, jobs, cfg))
    assert len(client.calls) == 1 and len(client.calls[0]) == len(reqs)
    assert list(out) == kinds
    for kind in kinds:
        assert [r.key for r in out[kind]] == ["A", "B"]
        for r in out[kind]:
            assert len(r.responses) == r.n_batches and r.n_failed_batches == 0
            assert r.prompt_tokens == 3 * r.n_batches
