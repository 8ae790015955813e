import pytest

from autointerp_assets.core.scoring.metrics import auroc, classification_metrics, score_status


def test_confusion_and_rates():
    truth = [True, True, True, True, False, False, False, False, False, False]
    pred = [True, True, True, False, True, False, False, False, False, False]
    m = classification_metrics(truth, pred, [None] * 10)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 5)
    assert (m["n"], m["n_failed"], m["n_pos"], m["n_neg"]) == (10, 0, 4, 6)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 5 / 6) / 2)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    assert m["accuracy"] == pytest.approx(8 / 10)
    assert m["auroc"] is None


def test_failed_predictions_excluded():
    truth = [True, True, False, False, True, False]
    pred = [True, False, False, True, None, None]
    prob = [0.9, 0.4, 0.2, 0.6, 0.99, 0.0]
    m = classification_metrics(truth, pred, prob)
    assert (m["n"], m["n_failed"], m["n_pos"], m["n_neg"]) == (6, 2, 2, 2)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 1, 1, 1)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(0.5)
    # auroc on the 4 scored items: pos {0.9, 0.4}, neg {0.2, 0.6}: pairs won 0.9>0.2, 0.9>0.6, 0.4>0.2 -> 3/4
    assert m["auroc"] == pytest.approx(0.75)


def test_undefined_ratios():
    # no predicted positives: precision undefined; only positives: TNR undefined
    m = classification_metrics([True, True], [False, False], None)
    assert m["precision"] is None
    assert m["recall"] == 0.0
    assert m["f1"] == 0.0
    assert m["balanced_accuracy"] is None  # only TPR is defined: not a balanced accuracy
    assert score_status(m, "balanced_accuracy") == (
        "undefined", "balanced accuracy undefined: no non-activating item was scored")
    m = classification_metrics([False, False, False], [False, False, True])
    assert m["balanced_accuracy"] is None and m["accuracy"] == pytest.approx(2 / 3)  # only TNR
    assert score_status(m, "balanced_accuracy")[1].endswith("no activating item was scored")
    assert m["recall"] is None and m["precision"] == 0.0
    m = classification_metrics([True, False], [None, None], [0.5, 0.5])
    assert m["n_failed"] == 2
    for k in ("balanced_accuracy", "precision", "recall", "f1", "accuracy", "auroc"):
        assert m[k] is None
    assert score_status(m, "balanced_accuracy") == ("failed", "no item answered (2 of 2 failed)")
    m = classification_metrics([], [], [])
    assert m["n"] == 0 and m["balanced_accuracy"] is None
    assert score_status({"n": 10, "n_failed": 0}, "correlation", None)[0] == "undefined"
    assert score_status({"n": 10, "n_failed": 0}, "correlation", 0.3) == ("ok", None)


def test_auroc_values():
    assert auroc([True, True, False, False], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert auroc([True, True, False, False], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert auroc([True, True, False, False], [0.5] * 4) == 0.5
    # ties: pos {0.5, 0.8}, neg {0.5, 0.2}: 0.5 vs 0.5 -> 1/2, 0.5>0.2, 0.8>0.5, 0.8>0.2 -> 3.5/4
    assert auroc([True, True, False, False], [0.5, 0.8, 0.5, 0.2]) == pytest.approx(0.875)
    assert auroc([True, True], [0.1, 0.2]) is None
    assert auroc([], []) is None


def test_auroc_skips_missing_probabilities():
    truth = [True, False, True, False]
    m = classification_metrics(truth, [True, False, True, False], [0.9, 0.1, None, None])
    assert m["auroc"] == 1.0
    m = classification_metrics(truth, [True, False, True, False], [0.9, None, None, None])
    assert m["auroc"] is None  # no negative with a probability


def test_length_mismatch():
    with pytest.raises(ValueError):
        classification_metrics([True], [True, False], None)
