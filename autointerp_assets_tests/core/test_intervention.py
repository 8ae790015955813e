"""Intervention scoring on known answers: planted latents whose decoder direction is a token's unembedding
direction, real SmolLM2 (transformers, hooks), the KL calibration, common-random-number sampling, and a
literal test-double scorer (tests/literal_scorer.py) that applies 'promotes "<word>"' to the continuations.

No free text is asserted (rule NO-FREE-TEXT): only whether the planted token's id occurs in sampled ids,
KL values, equalities of token ids and the scorer's metrics.
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from autointerp_assets.core import steering
from autointerp_assets.core.config import ScorerConfig
from autointerp_assets.core.scoring import bootstrap
from autointerp_assets.core.scoring.intervention import InterventionJob, Pair, build_batches, score_intervention
from autointerp_assets.core.scoring.metrics import classification_metrics
from autointerp_assets.core.scoring.surprisal import load_base_lm
from autointerp_assets.core.subject_model import resolve_model
from autointerp_assets_tests.conftest import ROOT
from autointerp_assets_tests.support.literal_scorer import LiteralScorer

WORDS = (" blue", " water", " music")  # planted: their unembedding rows, added at a late layer
LAYER = 24
TARGET_KL = 0.5  # the paper's strength: 0.5 nats of next-token KL, within 10 %
PROMPTS = steering.NEUTRAL_PROMPTS[10:26]


@pytest.fixture(scope="module")
def planted():
    tok, model = load_base_lm(resolve_model("smollm2", ROOT / "data"), "auto")
    ids = [tok(w, add_special_tokens=False)["input_ids"] for w in WORDS]
    assert all(len(i) == 1 for i in ids)
    ids = [i[0] for i in ids]
    unembed = model.get_output_embeddings().weight.detach().float()
    dirs = torch.stack([unembed[i] / unembed[i].norm() for i in ids])
    st = steering.Steerer(model, tok, model.model.layers[LAYER], bos_id=tok.convert_tokens_to_ids("<|endoftext|>"))
    states = steering.prepare(st, PROMPTS)
    clean_lp = steering.clean_logprobs(st, states, dirs.shape[1])
    cal = steering.calibrate(st, states, dirs, TARGET_KL, 0.1, 12, initial=torch.full((len(ids),), 10.0),
                             clean=clean_lp)
    clean, steered = steering.generate(st, states, dirs, cal.strength, 8, 1.0, seed=3)
    yield {"tok": tok, "model": model, "steerer": st, "states": states, "dirs": dirs, "ids": ids, "cal": cal,
           "clean_lp": clean_lp, "clean": clean, "steered": steered}
    st.close()


def test_calibration_lands_on_the_target_kl(planted):
    cal = planted["cal"]
    assert cal.converged.all(), cal
    # recomputed independently at the kept strengths: the mean KL over the prompts is the target within 10 %
    kl = steering.mean_kl(planted["steerer"], planted["states"], planted["clean_lp"], planted["dirs"], cal.strength)
    assert torch.allclose(kl, cal.kl, rtol=1e-3)
    assert ((kl - TARGET_KL).abs() <= 0.1 * TARGET_KL).all(), kl
    # a stronger push moves the distribution further (the search's premise)
    assert (steering.mean_kl(planted["steerer"], planted["states"], planted["clean_lp"], planted["dirs"],
                             cal.strength * 2) > kl).all()


def test_a_planted_latent_makes_its_token_appear_in_steered_continuations(planted):
    n = len(PROMPTS)
    for k, tid in enumerate(planted["ids"]):
        steered_hits = sum(tid in s for s in planted["steered"][k])
        clean_hits = sum(tid in c for c in planted["clean"])
        assert steered_hits >= 0.6 * n and clean_hits <= 0.1 * n, (WORDS[k], steered_hits, clean_hits)


def test_token_change_puts_the_planted_token_first(planted):
    ids, inc = steering.token_change(planted["steerer"], planted["states"], planted["dirs"], planted["cal"].strength,
                                     5, clean=planted["clean_lp"])
    assert ids[:, 0].tolist() == planted["ids"]
    assert (inc[:, 0] > 0).all() and (inc[:, :-1] >= inc[:, 1:]).all()


def test_zero_strength_gives_the_clean_continuation_and_the_hook_leaves_no_trace(planted):
    st, states = planted["steerer"], planted["states"]
    clean, steered = steering.generate(st, states, planted["dirs"], torch.zeros(len(WORDS)), 8, 1.0, seed=3)
    assert clean == planted["clean"]  # the same draws: sampling depends on (seed, prompt) only
    assert all(s == clean for s in steered)
    other, _ = steering.generate(st, states[:2], planted["dirs"], torch.zeros(len(WORDS)), 8, 1.0, seed=4)
    assert other != clean[:2]  # another seed samples other continuations
    ids = torch.tensor([states[0].ids])
    with torch.inference_mode():
        hooked = planted["model"](ids).logits
        handle = steering.Steerer(planted["model"], planted["tok"], planted["model"].model.layers[LAYER])
        handle.close()
        again = planted["model"](ids).logits
    assert torch.equal(hooked, again)


def _jobs(planted, explanation_of) -> list[InterventionJob]:
    tok = planted["tok"]
    return [InterventionJob(f"planted/{k}", explanation_of(k),
                            [Pair(p, PROMPTS[p], tok.decode(planted["clean"][p]), tok.decode(planted["steered"][k][p]))
                             for p in range(len(PROMPTS))]) for k in range(len(WORDS))]


def test_a_literal_scorer_separates_steered_from_clean_and_the_control_stays_at_chance(planted):
    cfg = ScorerConfig(examples_per_prompt=5)
    real = _jobs(planted, lambda k: f'promotes "{WORDS[k].strip()}"')
    control = _jobs(planted, lambda k: f'promotes "{WORDS[(k + 1) % len(WORDS)].strip()}"')  # another latent's
    results = asyncio.run(score_intervention(LiteralScorer(), real + control, cfg))
    for i, res in enumerate(results):
        truth = [it.truth for it in res.items]
        m = classification_metrics(truth, [it.prediction for it in res.items], [None] * len(truth))
        ci = bootstrap.balanced_accuracy_ci(truth, [it.prediction == it.truth for it in res.items], 1000, res.key)
        assert res.n_failed_batches == 0 and m["n"] == len(PROMPTS)
        if i < len(real):
            assert m["balanced_accuracy"] >= 0.85, (res.key, m)
        else:
            assert abs(m["balanced_accuracy"] - 0.5) <= 0.15 and ci.low <= 0.5 <= ci.high, (res.key, m, ci)


def test_pairs_put_the_steered_continuation_first_in_half_and_an_answer_that_ignores_them_is_chance():
    cfg = ScorerConfig(examples_per_prompt=4)
    job = InterventionJob("L/7", "anything", [Pair(i, f"p{i}", f"clean {i}", f"steered {i}") for i in range(10)])
    batches = build_batches(job, cfg)
    items = [it for b in batches for it in b.items]
    assert [len(b.items) for b in batches] == [4, 4, 2] and sorted(it.example_id for it in items) == list(range(10))
    assert sum(it.truth for it in items) == 5
    for b in batches:  # the steered text sits where truth says
        user = b.request.messages[-1]["content"]
        for pos, it in enumerate(b.items, 1):
            a_line = user.split(f"Text {pos}:")[1].split("\n")[1]
            assert a_line.strip().startswith("A: steered" if it.truth else "A: clean")
    assert build_batches(job, cfg)[0].request == batches[0].request  # seeded by the key
    always_a = classification_metrics([it.truth for it in items], [True] * 10, [None] * 10)
    assert always_a["balanced_accuracy"] == 0.5
