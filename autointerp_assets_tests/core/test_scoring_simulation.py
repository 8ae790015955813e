"""Simulation: known answers from an oracle simulator, prompt layout on the real tokenizer, and the real
vLLM engine in both modes (prompt logprobs and constrained JSON)."""

from __future__ import annotations


import numpy as np
import pytest

from autointerp_assets.core.config import LLMConfig, load_config
from autointerp_assets.core.llm.base import ChatResponse
from autointerp_assets.core.records import Example
from autointerp_assets.core.scoring import simulation as sim
from autointerp_assets_tests.conftest import CONFIG_PATH, TEST_LLM


def _examples():
    a = Example(1, (" We", " went", " to", " Paris", " in", " May"), (0, 0, 0, 8.0, 0, 0), True, 0)
    b = Example(2, (" She", " loves", " Berlin", " and", " Rome", "."), (0, 0, 4.0, 0, 1.6, 0), True, 1)
    c = Example(3, (" The", " function", " returns", " None", ".", "\n"), (0,) * 6, False, -1)
    return [a, b, c]


class Oracle:
    """A simulator that knows the true activations (via the listed tokens) or always answers `fixed`."""

    engine = "openai"
    model = "oracle"

    def __init__(self, truth: dict[tuple[str, ...], list[int]] | None = None, fixed: str | None = None):
        self.truth, self.fixed, self.calls = truth or {}, fixed, 0

    async def generate(self, requests):
        self.calls += 1
        out = []
        for r in requests:
            listing = r.messages[-1]["content"].split("Tokens:\n", 1)[1].rsplit("\nReply", 1)[0]
            key = tuple(listing.split("\n"))
            out.append(ChatResponse(text=self.fixed if self.fixed is not None else str(self.truth[key]),
                                    prompt_tokens=10, completion_tokens=5))
        return out


def _oracle_for(exs):
    lat_max = max(ex.max_activation for ex in exs)
    return {tuple(sim.display_token(t) for t in ex.str_tokens): [int(round(v)) for v in sim.normalised(ex, lat_max)]
            for ex in exs}


def test_perfect_simulation_has_correlation_one_and_constant_is_undefined():
    exs = _examples()
    client = Oracle(_oracle_for(exs))
    (res,) = sim.score_simulation(client, ["l/0"], ["Cities"], [exs], mode="auto")
    assert client.calls == 1  # every example in one engine call
    assert res.correlation == pytest.approx(1.0) and res.n_failed == 0
    assert [p.tolist() for p in res.predicted] == [[0, 0, 0, 10, 0, 0], [0, 0, 5, 0, 2, 0], [0] * 6]
    (flat,) = sim.score_simulation(Oracle(fixed="[3, 3, 3, 3, 3, 3]"), ["l/0"], ["x"], [exs], mode="json")
    assert flat.correlation is None  # a constant prediction has no correlation (not 0, not 1)


def test_malformed_answer_fails_its_example_only():
    exs = _examples()
    truth = _oracle_for(exs)
    truth[tuple(sim.display_token(t) for t in exs[2].str_tokens)] = "[1, 2]"  # wrong length
    (res,) = sim.score_simulation(Oracle(truth), ["l/0"], ["Cities"], [exs], mode="json")
    assert [p is None for p in res.predicted] == [False, False, True]
    assert res.n_failed == 1 and res.failure_reasons[0].startswith("parse_error")
    assert res.correlation == pytest.approx(1.0)  # from the two examples that worked
    assert sim.parse_values("[0, 10, 3]", 3).tolist() == [0, 10, 3]
    assert sim.parse_values("[0, 11, 3]", 3) is None and sim.parse_values("no list", 3) is None


def test_logprob_mode_needs_the_in_process_engine():
    with pytest.raises(ValueError, match="simulation_mode"):
        sim.resolve_mode("logprobs", Oracle())
    assert sim.resolve_mode("auto", Oracle()) == "json"


def test_expected_value_renormalises_over_digits():
    digits = {10: 0, 11: 5, 12: 9}
    positions = [{}, {10: np.log(0.2), 11: np.log(0.2), 99: np.log(0.6)}, {99: 0.0}]
    ev, missing = sim.expected_values(positions, [1, 2], digits)
    assert ev[0] == pytest.approx(2.5) and ev[1] == 0 and missing == 1


@pytest.fixture(scope="module")
def smol_tok():
    from transformers import AutoTokenizer

    from autointerp_assets.core.subject_model import resolve_model

    cfg = load_config(CONFIG_PATH)
    return AutoTokenizer.from_pretrained(resolve_model("smollm2", cfg.resolve(cfg.workdir)))


def test_ten_is_read_as_ten_when_the_tokenizer_splits_it(smol_tok):
    reader = sim.ValueReader.of(smol_tok)
    one, zero = smol_tok.encode("1", add_special_tokens=False)[0], smol_tok.encode("0", add_special_tokens=False)[0]
    nl = smol_tok.encode("\n", add_special_tokens=False)[0]
    assert smol_tok.encode("10", add_special_tokens=False) == [one, zero]  # SmolLM2 splits digits
    assert reader.ambiguous(one) and not reader.ambiguous(zero)
    ev, _ = sim.expected_values([{one: 0.0}], [0], reader, {0: {one: {zero: np.log(0.9), nl: np.log(0.1)}}})
    assert ev[0] == pytest.approx(0.9 * 10 + 0.1 * 1)
    # without the continuation a "1" is read as 1 (what the first token alone can say)
    assert sim.expected_values([{one: 0.0}], [0], reader)[0][0] == pytest.approx(1.0)


class SplitDigitOracle:
    """An in-process engine double on SmolLM2's tokenizer (which writes 10 as "1", "0") whose logprobs put all
    mass on the true value's tokens: the first token at each slot, the second one after a "1"."""

    engine = "vllm"
    model = "oracle"

    def __init__(self, tok, truth: dict[tuple[str, ...], list[int]]):
        import threading

        self.tokenizer, self.truth, self._lock, self.llm = tok, truth, threading.Lock(), object()
        self.first_calls, self.next_calls = 0, 0


def test_logprob_mode_reads_every_value_0_to_10_on_a_tokenizer_that_splits_ten(smol_tok, monkeypatch):
    ex = Example(5, tuple(f" w{i}" for i in range(11)), tuple(float(v) for v in range(11)), True, 0)
    client = SplitDigitOracle(smol_tok, {})
    ids, slots = sim.logprob_prompt(smol_tok, "Counts up", ex.str_tokens)
    truth = {s: v for s, v in zip(slots, range(11))}
    enc = {v: smol_tok.encode(str(v), add_special_tokens=False) for v in range(11)}
    nl = smol_tok.encode("\n", add_special_tokens=False)[0]

    def fake_prompt(cl, prompts, top):
        cl.first_calls += 1
        return [[{enc[truth[i]][0]: 0.0} if i in truth else {} for i in range(len(p))] for p in prompts]

    def fake_next(cl, prompts, top):
        cl.next_calls += len(prompts)
        return [{enc[10][1]: 0.0} if truth[len(p) - 1] == 10 else {nl: 0.0} for p in prompts]

    monkeypatch.setattr(sim, "prompt_logprobs", fake_prompt)
    monkeypatch.setattr(sim, "next_token_logprobs", fake_next)
    (res,) = sim.score_simulation(client, ["l/0"], ["Counts up"], [[ex]], mode="logprobs")
    assert res.predicted[0].tolist() == [float(v) for v in range(11)]  # 10 is read as 10, 1 as 1
    assert res.correlation == pytest.approx(1.0)
    assert client.first_calls == 1 and client.next_calls == 2  # only the slots whose first token is "1"


@pytest.fixture(scope="module")
def engine():
    from autointerp_assets.core.llm import make_client

    cfg = load_config(CONFIG_PATH)
    return make_client(LLMConfig(**TEST_LLM), str(cfg.resolve(cfg.workdir)))


def test_value_slots_point_at_the_placeholder(engine):
    tok = engine.tokenizer
    ids, slots = sim.logprob_prompt(tok, "Cities", [" We", " went", "\n", " Paris"])
    assert len(slots) == 4 and slots == sorted(slots)
    for s in slots:
        assert tok.decode(ids[s:s + 1]) == sim.PLACEHOLDER
        assert tok.decode(ids[s - 1:s]).endswith("\t")
    assert set(sim.digit_ids(tok).values()) >= set(range(10))


def test_real_engine_both_modes(engine):
    exs = _examples()
    for mode in ("logprobs", "json"):
        (res,) = sim.score_simulation(engine, ["l/0"], ["City names such as Paris, Berlin and Rome."], [exs], mode=mode)
        assert len(res.responses) == 3 and all(r.prompt_tokens > 50 for r in res.responses)
        ok = [p for p in res.predicted if p is not None]
        assert ok, res.failure_reasons
        for p, ex in zip(res.predicted, exs):
            if p is not None:
                assert p.shape == (len(ex.str_tokens),) and np.all((p >= 0) & (p <= 10))
        if mode == "logprobs":  # expected values are real numbers, not just the argmax digit
            assert res.n_failed == 0 and any(not float(v).is_integer() for p in ok for v in p)
