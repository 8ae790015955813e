"""Per-latent bootstrap intervals and partition summaries on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from autointerp_assets.core.scoring import bootstrap, metrics


def _classifier(n: int, hit_pos: float, hit_neg: float):
    truth = [True] * n + [False] * n
    correct = [i < hit_pos * n for i in range(n)] + [i < hit_neg * n for i in range(n)]
    return truth, correct


def test_balanced_accuracy_interval_contains_the_estimate_and_shrinks_with_n():
    widths = []
    for n in (20, 200, 2000):
        truth, correct = _classifier(n, 0.8, 0.6)
        iv = bootstrap.balanced_accuracy_ci(truth, correct, n_boot=1000, seed=3)
        assert iv.value == pytest.approx(0.7)
        assert iv.low <= iv.value <= iv.high
        widths.append(iv.high - iv.low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.05 < widths[0]
    # seeded: the same seed gives the same interval, another seed another one
    a = bootstrap.balanced_accuracy_ci(*_classifier(20, 0.8, 0.6), seed="layers.1/3")
    assert a == bootstrap.balanced_accuracy_ci(*_classifier(20, 0.8, 0.6), seed="layers.1/3")
    assert a != bootstrap.balanced_accuracy_ci(*_classifier(20, 0.8, 0.6), seed="layers.1/4")


def test_auroc_identical_distributions_is_one_half_and_perfect_separation_is_one():
    rng = np.random.default_rng(0)
    s = rng.normal(size=30).tolist()
    iv = bootstrap.auroc_ci([True] * 30 + [False] * 30, s + s, seed=1)
    assert iv.value == 0.5 and iv.low < 0.5 < iv.high
    perfect = bootstrap.auroc_ci([True] * 10 + [False] * 10, list(range(10, 20)) + list(range(10)), seed=1)
    assert (perfect.value, perfect.low, perfect.high) == (1.0, 1.0, 1.0)
    assert bootstrap.auroc_ci([True, True], [0.3, 0.4]).value is None  # one class only: undefined


def test_auroc_point_estimate_matches_the_mann_whitney_metric():
    rng = np.random.default_rng(5)
    truth = (rng.random(80) < 0.4).tolist()
    score = np.round(rng.normal(size=80) + np.asarray(truth), 1).tolist()  # ties included
    assert bootstrap.auroc_ci(truth, score).value == pytest.approx(metrics.auroc(truth, score))


def test_correlation_perfect_simulation_is_one_and_interval_is_over_examples():
    true = [np.array([0, 0, 10, 2, 0.0]), np.array([0, 5, 0, 0, 0.0]), np.zeros(5)]
    iv = bootstrap.correlation_ci(true, [t.copy() for t in true], seed=0)
    assert iv.value == pytest.approx(1.0) and iv.low == pytest.approx(1.0) and iv.high == pytest.approx(1.0)
    anti = bootstrap.correlation_ci(true, [10 - t for t in true], seed=0)
    assert anti.value == pytest.approx(-1.0)
    assert bootstrap.pearson([1, 1, 1], [1, 2, 3]) is None  # constant side: undefined, not 0
    rng = np.random.default_rng(1)
    noisy_true = [rng.random(8) * 10 for _ in range(40)]
    noisy_pred = [t + rng.normal(scale=4, size=8) for t in noisy_true]
    iv = bootstrap.correlation_ci(noisy_true, noisy_pred, seed=0)
    assert iv.value == pytest.approx(np.corrcoef(np.concatenate(noisy_true), np.concatenate(noisy_pred))[0, 1])
    assert iv.low < iv.value < iv.high


def test_median_interval_and_summary_are_per_latent():
    assert bootstrap.median_ci_ranks(100) == (40, 61)
    assert bootstrap.median_ci_ranks(4) == (1, 4)  # too few latents: min..max
    lo, hi = bootstrap.median_ci(list(range(1, 101)))
    assert (lo, hi) == (40.0, 61.0)
    s = bootstrap.summarize([0.9, 0.8, 0.7, None, 0.6], [0.5, 0.5, 0.4, 0.5, None])
    assert s["latents"] == 4 and s["median"] == pytest.approx(0.75)
    assert (s["q25"], s["q75"]) == (pytest.approx(0.675), pytest.approx(0.825))
    assert s["control_latents"] == 3 and s["median_control"] == 0.5
    assert s["median_difference"] == pytest.approx(0.3)  # median of the paired differences 0.4, 0.3, 0.3
    assert s["difference_ci_low"] <= s["median_difference"] <= s["difference_ci_high"]


def _prompts(correlated: bool, n_prompts: int = 10, per: int = 5):
    """n_prompts prompts of ``per`` items, classes mixed inside each prompt (3 + 2), 60 % of each class answered
    right. Correlated: each prompt is answered all right or all wrong (one reading of one explanation);
    otherwise the right answers are 15 of each class's 25 items drawn at random. Per-class counts are equal."""
    truth = np.array([(i + p) % 2 == 0 for p in range(n_prompts) for i in range(per)])
    prompt = np.repeat(np.arange(n_prompts), per)
    if correlated:
        correct = prompt < 0.6 * n_prompts
    else:
        rng = np.random.default_rng(4)
        correct = np.zeros(len(truth), dtype=bool)
        for cls in (True, False):
            idx = np.flatnonzero(truth == cls)
            correct[rng.choice(idx, round(0.6 * len(idx)), replace=False)] = True
    return truth, correct, prompt


def test_interval_grows_when_the_answers_of_a_prompt_are_perfectly_correlated():
    widths = {}
    for correlated in (False, True):
        truth, correct, prompt = _prompts(correlated)
        for tc in (True, False):  # the same per-class hit rates in both cases
            assert correct[truth == tc].mean() == pytest.approx(0.6)
        for clusters in (None, prompt):
            iv = bootstrap.balanced_accuracy_ci(truth, correct, 2000, seed=1, clusters=clusters)
            assert iv.low <= iv.value <= iv.high
            widths[(correlated, clusters is not None)] = iv.high - iv.low
    # the item bootstrap cannot see the correlation: the same width either way
    assert widths[(True, False)] == pytest.approx(widths[(False, False)], rel=0.15)
    # independent answers: the prompt bootstrap gives about the item bootstrap's width
    assert widths[(False, True)] == pytest.approx(widths[(False, False)], rel=0.25)
    # the prompt bootstrap sees the correlation: much wider when the 5 answers of a prompt move together
    assert widths[(True, True)] > 1.8 * widths[(False, True)]
    assert widths[(True, True)] > 1.8 * widths[(True, False)]
    # AUROC from per-item probabilities: the same contrast
    truth, correct, prompt = _prompts(True)
    prob = np.where(correct == truth, 0.8, 0.2)
    wide = bootstrap.auroc_ci(truth, prob, 2000, seed=1, clusters=prompt)
    narrow = bootstrap.auroc_ci(truth, prob, 2000, seed=1)
    assert wide.value == narrow.value and (wide.high - wide.low) > 1.5 * (narrow.high - narrow.low)


def test_balanced_accuracy_with_an_empty_class_is_undefined_not_the_other_rate():
    assert bootstrap.balanced_accuracy_ci([True] * 5, [True] * 4 + [False]) == bootstrap.Interval(None, None, None)
    m = metrics.classification_metrics([True, True, False], [True, True, None])  # the negative's batch failed
    assert m["balanced_accuracy"] is None and m["recall"] == 1.0
    assert metrics.score_status(m, "balanced_accuracy") == (
        "undefined", "balanced accuracy undefined: no non-activating item was scored (1 failed)")
