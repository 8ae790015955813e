"""Per-latent classification metrics for the detection and fuzzing scorers (numpy only).

Always computed for one latent at a time (delphi pools samples across latents; the paper reports
per-latent medians). Items whose batch failed (prediction None) are excluded from every metric and
counted in ``n_failed``. An undefined ratio (0/0) is None; balanced accuracy needs both classes (with one
class it is undefined, never the one defined rate). ``score_status`` turns an undefined primary metric
into the status ``undefined`` and a reason a person can read.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def auroc(truth: Sequence[bool], score: Sequence[float]) -> float | None:
    """Area under the ROC curve = Mann-Whitney U / (n_pos * n_neg), ties counted as 1/2 (mid-ranks)."""
    y = np.asarray(truth, dtype=bool)
    s = np.asarray(score, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties (1-based)
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def classification_metrics(
    truth: Sequence[bool],
    prediction: Sequence[bool | None],
    probability: Sequence[float | None] | None = None,
) -> dict:
    """Confusion counts and rates of one latent's scored items.

    Keys: n (all items), n_failed (prediction None), n_pos / n_neg (scored items by truth),
    tp, tn, fp, fn, balanced_accuracy (mean of the defined class rates TPR, TNR), precision, recall,
    f1, accuracy, auroc (of the scored items that have a probability).
    """
    n = len(truth)
    if len(prediction) != n:
        raise ValueError(f"truth has {n} items, prediction {len(prediction)}")
    if probability is None:
        probability = [None] * n
    if len(probability) != n:
        raise ValueError(f"truth has {n} items, probability {len(probability)}")
    keep = [i for i in range(n) if prediction[i] is not None]
    t = np.asarray([bool(truth[i]) for i in keep], dtype=bool)
    p = np.asarray([bool(prediction[i]) for i in keep], dtype=bool)
    tp = int((t & p).sum())
    tn = int((~t & ~p).sum())
    fp = int((~t & p).sum())
    fn = int((t & ~p).sum())
    n_pos, n_neg = tp + fn, tn + fp
    tpr, tnr = _ratio(tp, n_pos), _ratio(tn, n_neg)
    with_prob = [i for i in keep if probability[i] is not None and np.isfinite(probability[i])]
    return {
        "n": n,
        "n_failed": n - len(keep),
        "n_pos": n_pos,
        "n_neg": n_neg,
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "balanced_accuracy": (tpr + tnr) / 2 if tpr is not None and tnr is not None else None,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, n_pos),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, len(keep)),
        "auroc": auroc([bool(truth[i]) for i in with_prob], [float(probability[i]) for i in with_prob])
        if with_prob else None,
    }


OK, FAILED, UNDEFINED = "ok", "failed", "undefined"


def score_status(m: dict, metric: str, value: float | None = None) -> tuple[str, str | None]:
    """(status, reason) of a latent's score whose primary metric is ``metric``: ``failed`` when no item was
    answered, ``undefined`` when items were answered but the metric has no value (with why), else ``ok``.
    ``m``: classification_metrics' dict, or any dict with n / n_failed (and n_pos / n_neg for classes);
    ``value``: the metric's value when it is not in ``m`` (correlation, accuracy)."""
    n, failed = m.get("n", 0), m.get("n_failed", 0)
    if n - failed <= 0:
        return FAILED, f"no item answered ({failed} of {n} failed)" if n else "no item to score"
    v = m.get(metric) if value is None else value
    if v is not None:
        return OK, None
    note = f" ({failed} failed)" if failed else ""
    if metric in ("balanced_accuracy", "auroc") and m.get("n_neg", 1) == 0:
        return UNDEFINED, f"{metric.replace('_', ' ')} undefined: no non-activating item was scored{note}"
    if metric in ("balanced_accuracy", "auroc") and m.get("n_pos", 1) == 0:
        return UNDEFINED, f"{metric.replace('_', ' ')} undefined: no activating item was scored{note}"
    if metric == "auroc":
        return UNDEFINED, "auroc undefined: no item has a probability (the engine gave no logprobs)"
    if metric == "correlation":
        return UNDEFINED, ("correlation undefined: the simulated activations are the same for every token "
                           "(a constant prediction correlates with nothing)")
    return UNDEFINED, f"{metric.replace('_', ' ')} undefined"
