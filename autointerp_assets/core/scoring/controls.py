"""The random-explanation control (the paper's baseline, median 0.51): every latent of a partition is
scored with ANOTHER latent's explanation on its own examples, by the same scorer, so real minus control
is a paired, per-latent difference.

The donor is chosen by a seeded derangement of the partition's latents (uniform over permutations
without a fixed point, by rejection: ~e draws expected), so no latent ever keeps its own explanation
(delphi's random loader can return the latent's own one). Detection / fuzzing controls go through
``scorers.score_latents`` with the latent's own key, so shuffles and fake highlights match the real run.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..scoring import classifier
from .bootstrap import hash_seed


def derangement(n: int, seed: int | str) -> list[int]:
    """A permutation p of range(n) with p[i] != i for all i (n >= 2); [] for n < 2 (no donor exists)."""
    if n < 2:
        return []
    rng = np.random.default_rng(hash_seed(seed) if isinstance(seed, str) else seed)
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p.tolist()


def donors(latents: Sequence[int], seed: int | str) -> dict[int, int]:
    """latent -> the latent whose explanation it gets as its control."""
    p = derangement(len(latents), seed)
    return {latents[i]: latents[j] for i, j in enumerate(p)}


def control_jobs(jobs: Sequence[classifier.ScoreJob], explanation_of: dict[str, str], donor_key: dict[str, str]
                 ) -> list[classifier.ScoreJob]:
    """The same jobs (keys, test and non-activating examples) with the donor's explanation."""
    return [classifier.ScoreJob(j.key, explanation_of[donor_key[j.key]], j.test, j.non_activating)
            for j in jobs if j.key in donor_key]
