"""The known-answer calibration: planted latents from the real corpus, sampled by the real sampler, scored by
the real stages with engine doubles whose behaviour is known -- a *literal* engine that applies the gold
explanation as written (so its power must be ~1 and its control at chance) and a *blind* one that answers
without reading the explanation (power 0) -- plus an explainer double that names the pattern it sees (recovery 1).
Real SmolLM2 tokenizer, real MiniLM (embedding scorer, recovery), real DuckDB."""

from __future__ import annotations

import re

import pytest

from autointerp_assets.core import stages
from autointerp_assets.core.config import load_config
from autointerp_assets.core.llm.base import ChatResponse
from autointerp_assets.core.stages import calibration as stage
from autointerp_assets_tests.conftest import write_config

pytestmark = pytest.mark.slow

N_RE = re.compile(r"Answer with a list of (\d+) value")
MARK = re.compile(r"<<(.*?)>>")


class Engine:
    """Scorer and explainer double. literal: answers detection / fuzzing by applying the explanation's planted
    pattern to each example (1 when the text, or every marked span, holds a token it describes); blind: answers
    1 to everything. As explainer it names the gold whose pattern most marked spans match."""

    engine, model = "openai", "double"

    def __init__(self, planted, blind: bool = False):
        self.planted, self.blind = planted, blind
        self.read = {p.gold: re.compile(p.pattern) for p in planted}
        self.requests = 0

    def _explain(self, user: str) -> str:
        spans = [s for line in user.split("\n") if line.startswith("Example ") for s in MARK.findall(line)]
        best = max(self.planted, key=lambda p: sum(bool(re.search(p.pattern, s)) for s in spans))
        return best.gold

    async def generate(self, requests):
        out = []
        for r in requests:
            self.requests += 1
            user = r.messages[-1]["content"]
            m = N_RE.search(user)
            if m is None:  # an explainer prompt
                gold = self._explain(user)
                out.append(ChatResponse(text=(" " if r.prefill else "[EXPLANATION]: ") + gold, prompt_tokens=200,
                                        completion_tokens=12))
                continue
            explanation = user.split("\n", 1)[0].removeprefix("Explanation: ")
            pattern = self.read.get(explanation)
            fuzzing = "marked" in r.messages[0]["content"]
            bits = []
            for line in [ln for ln in user.split("\n") if ln.startswith("Example ")][:int(m.group(1))]:
                text = line.split(": ", 1)[1]
                if self.blind:
                    bits.append(1)
                elif pattern is None:
                    bits.append(0)
                elif fuzzing:
                    spans = MARK.findall(text)
                    bits.append(int(bool(spans) and all(pattern.search(s) for s in spans)))
                else:
                    bits.append(int(bool(pattern.search(text.replace("<<", "").replace(">>", "")))))
            out.append(ChatResponse(text="[" + ", ".join(map(str, bits)) + "]", prompt_tokens=300, completion_tokens=14))
        return out


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calibration")
    cfg = load_config(write_config(tmp / "p.yaml", {
        "database": str(tmp / "w.duckdb"),
        "corpus": {"n_tokens": 129 * 256, "ctx_len": 129},
        "explainer": {"llm": {"engine": "openai", "model": "double", "base_url": "http://127.0.0.1:9/v1"}},
        "sampler": {"min_examples": 40, "n_quantiles": 2, "n_train": 10, "n_test": 20, "n_non_activating": 20,
                    "n_train_non_activating": 5, "example_ctx_len": 16, "window": "fixed",
                    "non_activating_source": "embedding"},
        "scorer": {"scorers": ["detection", "fuzzing"], "logprobs": False},
        "scoring": {"scorers": ["embedding", "intruder"], "control_scorers": ["detection", "fuzzing", "embedding"],
                           "bootstrap_samples": 300},
        "calibration": {"max_latents": 10}}))
    ctx = stages.Context.of(cfg)
    stages.run_corpus(ctx)
    return ctx


def test_a_literal_engine_has_full_power_and_its_control_is_at_chance(ctx):
    planted = stage.planted_latents(ctx)
    assert len(planted) == 10 and len({p.gold for p in planted}) == 10
    literal = Engine(planted)
    out = stages.run_calibration(ctx, literal, literal)
    lat = ctx.wh.query("SELECT * FROM calibration_latents ORDER BY latent")
    assert lat.height == 10 and (lat["status"] == "selected").sum() >= 8
    power = {p["scorer"]: p for p in out["power"]}
    assert set(power) == {"detection", "fuzzing", "embedding"}  # intruder never reads an explanation: not run
    for scorer in ("detection", "fuzzing"):
        p = power[scorer]
        assert p["latents"] == (lat["status"] == "selected").sum()
        assert p["gold_wins"] >= 0.95, p  # the known answer: a literal reading of the gold always wins
        assert p["median_gold"] >= 0.9 and abs(p["median_control"] - 0.5) <= 0.1, p  # control at chance
        assert p["power_ci_low"] > 0, p  # the interval of the median gold - control excludes 0
        assert p["median_explainer"] >= 0.9  # the explainer double names the right gold, which the engine applies
    # recovery: the explainer double picks the gold its marks match; MiniLM puts it nearest its own gold
    rec = {r["explainer"]: r for r in out["recovery"]}
    assert rec["default"]["recovery"] == 1.0 and rec["default"]["latents"] == power["detection"]["latents"]
    assert 0.0 <= rec["baseline top_tokens"]["recovery"] <= 1.0 and rec["baseline top_tokens"]["chance"] < 0.2
    # the calls are in the project's ledger
    assert ctx.wh.scalar("SELECT count(*) FROM llm_calls WHERE stage LIKE 'calibration/%'") == literal.requests
    assert stage.calibration_path(ctx).exists()


def test_a_blind_scorer_has_no_power_and_a_rerun_replaces_its_rows(ctx):
    planted = stage.planted_latents(ctx)
    no_embedding = ctx.cfg.model_copy(update={"scoring": ctx.cfg.scoring.model_copy(
        update={"scorers": ()})})  # (the embedding scorer was calibrated above; MiniLM is the slow part here)
    blind = stages.Context(no_embedding, ctx.wh, ctx.log)
    out = stages.run_calibration(blind, Engine(planted), Engine(planted, blind=True))
    for scorer in ("detection", "fuzzing"):
        p = {q["scorer"]: q for q in out["power"]}[scorer]
        assert p["gold_wins"] == 0.0 and p["power_median_difference"] == 0.0 and p["median_gold"] == 0.5, p
    # keyed by calibration and explainer fingerprint: this run replaced the literal one's rows; seeded: the same
    # numbers again, and no row appended
    assert ctx.wh.scalar("SELECT count(DISTINCT explainer_fp) FROM calibration_scores") == 1
    n = ctx.wh.scalar("SELECT count(*) FROM calibration_scores")
    again = stages.run_calibration(blind, Engine(planted), Engine(planted, blind=True))
    assert again["power"] == out["power"] and ctx.wh.scalar("SELECT count(*) FROM calibration_scores") == n
