"""Scorer sensitivity: does the scorer read the explanation at all?

The random-explanation control (``controls``) scores every latent's own examples a second time with another
latent's explanation. A scorer that reads the explanation must answer differently at least sometimes; one
that ignores it (a small LLM answering "1" to most items, a prompt whose examples alone decide) answers the
same, and its real and control scores agree whatever the explanation says. The paired difference real -
control cannot tell "the explanations are no better than random" from "the scorer never looked"; this can.

Per scorer with a control, per partition: the share of items whose prediction changes when the real
explanation is swapped for the control's. An item is the same example shown the same way in both runs
(detection and fuzzing build their prompts from the latent's key, so shuffles and highlights match).
The prediction is the scorer's 0/1 answer; for scorers that give a value per item (embedding, surprisal,
simulation) it is "above the median of this latent's items under this explanation", so a change means the
explanation reordered the items. The share's interval resamples whole latents (their items are not
independent). Verdict, with ``min_share`` (``scoring.sensitivity_min_share``):

- **does not read the explanation** when even the interval's upper end is below ``min_share``: demonstrated;
- **reads the explanation** when its lower end is at least ``min_share``;
- **unclear** otherwise (too few items to tell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .bootstrap import ratio_ci

Key = tuple  # (latent, example_id, truth): one item of one latent


def value_labels(keys: Sequence[Key], values: Sequence[float | None]) -> dict[Key, bool]:
    """0/1 predictions of a value scorer: an item's value above the median of its latent's items."""
    by_latent: dict = {}
    for k, v in zip(keys, values):
        if v is not None and np.isfinite(v):
            by_latent.setdefault(k[0], []).append((k, float(v)))
    out = {}
    for items in by_latent.values():
        med = float(np.median([v for _, v in items]))
        out.update({k: v > med for k, v in items})
    return out


def changed_per_latent(real: Mapping[Key, bool | None], control: Mapping[Key, bool | None]) -> dict[int, tuple[int, int]]:
    """latent -> (items answered in both runs, items whose answer differs)."""
    out: dict[int, list[int]] = {}
    for k, r in real.items():
        c = control.get(k)
        if r is None or c is None:
            continue
        n = out.setdefault(k[0], [0, 0])
        n[0] += 1
        n[1] += bool(r) != bool(c)
    return {lat: (n, d) for lat, (n, d) in out.items()}


@dataclass(frozen=True)
class Sensitivity:
    scorer: str
    latents: int
    items: int
    changed: int
    share: float | None
    share_low: float | None
    share_high: float | None
    min_share: float
    reads_explanation: bool | None  # None = unclear
    finding: str


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3f}"


def assess(scorer: str, per_latent: Mapping[int, tuple[int, int]], min_share: float, n_boot: int, seed: str,
           level: float = 0.95, difference: Mapping | None = None) -> Sensitivity:
    """The verdict and a sentence a researcher reads. ``difference``: the partition's median real - control
    difference with its interval (keys median_difference, difference_ci_low, difference_ci_high, latents)."""
    lats = sorted(per_latent)
    items = [per_latent[k][0] for k in lats]
    diffs = [per_latent[k][1] for k in lats]
    iv = ratio_ci(diffs, items, n_boot, seed, level)
    if iv.value is None:
        reads = None
    elif iv.high is not None and iv.high < min_share:
        reads = False
    elif iv.low is not None and iv.low >= min_share:
        reads = True
    else:
        reads = None
    verdict = {False: "does NOT read the explanation", True: "reads the explanation", None: "unclear"}[reads]
    text = (f"{scorer} {verdict}: with another latent's explanation {_pct(iv.value)} of its {sum(items)} answers "
            f"change (95 % CI {_pct(iv.low)}–{_pct(iv.high)}; threshold {_pct(min_share)}) over {len(lats)} latents")
    if difference and difference.get("median_difference") is not None:
        text += (f"; real − control median difference {_signed(difference['median_difference'])} "
                 f"[{_signed(difference.get('difference_ci_low'))}, {_signed(difference.get('difference_ci_high'))}]")
    if reads is False:
        text += ". Its scores measure the examples, not the explanation: do not read them as explanation quality"
    return Sensitivity(scorer, len(lats), sum(items), sum(diffs), iv.value, iv.low, iv.high, min_share, reads, text)
