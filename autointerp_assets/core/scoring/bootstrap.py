"""Per-latent bootstrap confidence intervals and per-partition summaries (numpy only, vectorized).

Every interval is for ONE latent: its own items are resampled ``n_boot`` times (seeded) and the
metric recomputed for every resample at once from count vectors, never by a Python loop over
resamples. Partition summaries are medians and IQRs of per-latent values (the paper's protocol);
samples are never pooled across latents (delphi pools them).

- detection / fuzzing (items answered 5 to a prompt): a **cluster bootstrap over prompts**, stratified.
  The answers of one prompt are not independent (one reading of one explanation, in one context), so whole
  prompts are resampled, never single items; prompts are resampled within two strata -- those holding
  more activating than non-activating items and the others -- so each resample keeps about the real
  class mix. The metric is recomputed from the resampled prompts' pooled class counts; a resample left
  without one class (possible with very few prompts) is dropped. With independent answers this gives
  the width of the item bootstrap; with answers correlated inside prompts it is wider, as it must be;
- classification without prompts given (intruder rounds are one prompt each): stratified by class, i.e.
  positives and negatives resampled separately, so every resample has both classes;
- correlation (simulation): whole examples are resampled (tokens of one window are not independent)
  and Pearson's r is recomputed from summed per-example sufficient statistics;
- the median of per-latent differences (real minus control) gets the distribution-free order-statistic
  interval of a median, the same rule the SQL view ``scorer_summary`` uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

Z95 = 1.959964


def _rng(seed: int | str) -> np.random.Generator:
    return np.random.default_rng(abs(hash_seed(seed)))


def hash_seed(seed: int | str) -> int:
    """A stable integer seed from an int or a string (Python's hash() is salted per process)."""
    if isinstance(seed, int):
        return seed
    import hashlib

    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little")


def _counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) multinomial resample counts: how often each of n items is drawn."""
    if n == 0:
        return np.zeros((n_boot, 0))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def _interval(samples: np.ndarray, level: float) -> tuple[float | None, float | None]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None, None
    a = (1 - level) / 2
    lo, hi = np.quantile(samples, [a, 1 - a])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Interval:
    value: float | None  # the point estimate on all items
    low: float | None
    high: float | None


def prompt_resamples(clusters: Sequence, truth: np.ndarray, n_boot: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(item -> prompt index, (n_boot, n_prompts) resample counts). Prompts are resampled with replacement
    within two strata: prompts holding more positives than negatives, and the others."""
    _, index = np.unique(np.asarray(clusters), return_inverse=True)
    n_prompts = int(index.max()) + 1 if index.size else 0
    leans_pos = 2 * np.bincount(index, weights=truth.astype(float), minlength=n_prompts) > \
        np.bincount(index, minlength=n_prompts)
    counts = np.zeros((n_boot, n_prompts))
    for stratum in (leans_pos, ~leans_pos):
        members = np.flatnonzero(stratum)
        if members.size:
            counts[:, members] = _counts(rng, members.size, n_boot)
    return index, counts


def balanced_accuracy_ci(truth: Sequence[bool], correct: Sequence[bool], n_boot: int = 1000,
                         seed: int | str = 0, level: float = 0.95, clusters: Sequence | None = None) -> Interval:
    """Balanced accuracy = mean of the two class-wise hit rates; ``correct[i]`` = prediction i equals truth i.
    Undefined (None) unless both classes have items. ``clusters``: the prompt of each item (cluster bootstrap
    over prompts, stratified); None = items resampled within their class."""
    t = np.asarray(truth, dtype=bool)
    c = np.asarray(correct, dtype=float)
    pos, neg = c[t], c[~t]
    if pos.size == 0 or neg.size == 0:
        return Interval(None, None, None)
    point = float((pos.mean() + neg.mean()) / 2)
    rng = _rng(seed)
    if clusters is None:
        boots = (_counts(rng, pos.size, n_boot) @ pos / pos.size + _counts(rng, neg.size, n_boot) @ neg / neg.size) / 2
        return Interval(point, *_interval(boots, level))
    index, w = prompt_resamples(clusters, t, n_boot, rng)
    per = [np.bincount(index, weights=x, minlength=w.shape[1]) for x in (t * c, t.astype(float), ~t * c, (~t).astype(float))]
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = (w @ per[0] / (w @ per[1]) + w @ per[2] / (w @ per[3])) / 2
    return Interval(point, *_interval(boots, level))


def accuracy_ci(correct: Sequence[bool], n_boot: int = 1000, seed: int | str = 0, level: float = 0.95) -> Interval:
    c = np.asarray(correct, dtype=float)
    if c.size == 0:
        return Interval(None, None, None)
    boots = _counts(_rng(seed), c.size, n_boot) @ c / c.size
    return Interval(float(c.mean()), *_interval(boots, level))


def auroc_ci(truth: Sequence[bool], score: Sequence[float], n_boot: int = 1000, seed: int | str = 0,
             level: float = 0.95, clusters: Sequence | None = None) -> Interval:
    """AUROC = P(score_pos > score_neg) + P(tie) / 2; each resample is c_pos^T W c_neg / (|c_pos| |c_neg|)
    over the pairwise win matrix W (ties 1/2), so all resamples cost one einsum. ``clusters``: as for
    balanced_accuracy_ci (each item weighted by its prompt's resample count)."""
    t = np.asarray(truth, dtype=bool)
    s = np.asarray(score, dtype=float)
    sp, sn = s[t], s[~t]
    if sp.size == 0 or sn.size == 0:
        return Interval(None, None, None)
    w = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    rng = _rng(seed)
    if clusters is None:
        cp, cn = _counts(rng, sp.size, n_boot), _counts(rng, sn.size, n_boot)
    else:
        index, wc = prompt_resamples(clusters, t, n_boot, rng)
        cp, cn = wc[:, index[t]], wc[:, index[~t]]
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = np.einsum("bi,ij,bj->b", cp, w, cn) / (cp.sum(1) * cn.sum(1))
    return Interval(float(w.mean()), *_interval(boots, level))


def ratio_ci(num: Sequence[float], den: Sequence[float], n_boot: int = 1000, seed: int | str = 0,
             level: float = 0.95) -> Interval:
    """sum(num) / sum(den) over units (e.g. changed answers / answers per latent), with a bootstrap over the
    units (a cluster bootstrap: the items of one unit are not independent)."""
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if a.size == 0 or b.sum() <= 0:
        return Interval(None, None, None)
    c = _counts(_rng(seed), a.size, n_boot)
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = (c @ a) / (c @ b)
    return Interval(float(a.sum() / b.sum()), *_interval(boots, level))


def _pearson_from_sums(n, sx, sy, sxx, syy, sxy) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / n
        vx = sxx - sx * sx / n
        vy = syy - sy * sy / n
        r = cov / np.sqrt(vx * vy)
    return np.where((vx > 1e-12 * np.maximum(n, 1)) & (vy > 1e-12 * np.maximum(n, 1)), r, np.nan)


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r; None when either side is constant (undefined)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2:
        return None
    r = _pearson_from_sums(x.size, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum())
    return None if not np.isfinite(r) else float(np.clip(r, -1.0, 1.0))


def correlation_ci(true_per_example: Sequence[Sequence[float]], pred_per_example: Sequence[Sequence[float]],
                   n_boot: int = 1000, seed: int | str = 0, level: float = 0.95) -> Interval:
    """Pearson's r over all tokens of a latent's examples (concatenated), with a bootstrap over examples."""
    stats = np.array([[len(x), np.sum(x), np.sum(y), np.dot(x, x), np.dot(y, y), np.dot(x, y)]
                      for x, y in ((np.asarray(a, float), np.asarray(b, float))
                                   for a, b in zip(true_per_example, pred_per_example))], dtype=float)
    if stats.size == 0:
        return Interval(None, None, None)
    tot = stats.sum(axis=0)
    r = _pearson_from_sums(*tot)
    point = None if not np.isfinite(r) else float(np.clip(r, -1, 1))
    boots = _pearson_from_sums(*(_counts(_rng(seed), len(stats), n_boot) @ stats).T)
    lo, hi = _interval(np.clip(boots, -1, 1), level)
    return Interval(point, lo, hi)


# --- partition summaries --------------------------------------------------------------------------

def median_ci_ranks(n: int, z: float = Z95) -> tuple[int, int]:
    """1-based order statistics (k, n + 1 - k) bounding the median with ~95 % confidence
    (normal approximation to the binomial; k >= 1, so tiny n gives [min, max])."""
    k = math.floor(n / 2 - z * math.sqrt(n) / 2)
    k = max(k, 1)
    return k, n + 1 - k


def median_ci(values: Sequence[float]) -> tuple[float | None, float | None]:
    v = np.sort(np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float))
    if v.size == 0:
        return None, None
    k, m = median_ci_ranks(v.size)
    return float(v[k - 1]), float(v[m - 1])


def summarize(real: Sequence[float | None], control: Sequence[float | None] | None = None) -> dict:
    """Median and IQR of per-latent values; with a paired control (same latents, same order) also the
    control's median and the median per-latent difference real - control with its 95 % interval."""
    r = np.asarray([np.nan if x is None else x for x in real], dtype=float)
    ok = np.isfinite(r)
    out: dict = {"latents": int(ok.sum())}
    if ok.any():
        q1, med, q3 = np.quantile(r[ok], [0.25, 0.5, 0.75])
        out.update(median=float(med), q25=float(q1), q75=float(q3))
    else:
        out.update(median=None, q25=None, q75=None)
    if control is not None:
        c = np.asarray([np.nan if x is None else x for x in control], dtype=float)
        pair = ok & np.isfinite(c)
        d = r[pair] - c[pair]
        out["control_latents"] = int(pair.sum())
        out["median_control"] = float(np.median(c[np.isfinite(c)])) if np.isfinite(c).any() else None
        out["median_difference"] = float(np.median(d)) if d.size else None
        out["difference_ci_low"], out["difference_ci_high"] = median_ci(d.tolist())
    return out
