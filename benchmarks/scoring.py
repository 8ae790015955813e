"""Scoring-extras benchmark (not a test): prints ratios against a baseline measured in the same run.

1. bootstrap: per-latent 95 % intervals of AUROC and balanced accuracy for 96 latents x 40 items x 1000
   resamples, vectorized (core.scoring.bootstrap) vs the obvious loop that recomputes
   metrics.auroc / classification_metrics per resample;
2. simulation on the real engine (SmolLM2-135M, vLLM in-process): prompt-logprob expected values (one
   prompt per example, one forward pass, no decoding) vs constrained JSON answers (same examples),
   seconds and tokens per simulated example.

    .venv/bin/python benchmarks/scoring.py [--examples 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def bench_bootstrap(n_latents: int = 96, n_items: int = 40, n_boot: int = 1000) -> dict:
    from autointerp_assets.core.scoring import bootstrap, metrics

    rng = np.random.default_rng(0)
    data = []
    for _ in range(n_latents):
        truth = np.array([True] * (n_items // 2) + [False] * (n_items // 2))
        score = rng.normal(size=n_items) + truth * 0.5
        data.append((truth, score, (score > 0.25) == truth))
    t0 = time.perf_counter()
    for i, (t, s, c) in enumerate(data):
        bootstrap.auroc_ci(t, s, n_boot, i)
        bootstrap.balanced_accuracy_ci(t, c, n_boot, i)
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t, s, c in data[:8]:  # the loop is slow: time 8 latents and scale
        pos, neg = np.flatnonzero(t), np.flatnonzero(~t)
        for _ in range(n_boot):
            idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
            metrics.auroc(t[idx].tolist(), s[idx].tolist())
            metrics.classification_metrics(t[idx].tolist(), (c[idx] == t[idx]).tolist())
    slow = (time.perf_counter() - t0) * n_latents / 8
    return {"latents": n_latents, "items": n_items, "resamples": n_boot, "vectorized_s": round(fast, 3),
            "loop_s": round(slow, 2), "speedup": round(slow / fast, 1)}


def bench_simulation(n_examples: int) -> dict:
    from autointerp_assets.core.config import LLMConfig
    from autointerp_assets.core.llm import make_client
    from autointerp_assets.core.records import Example
    from autointerp_assets.core.scoring import simulation

    client = make_client(LLMConfig(max_model_len=2048, kv_cache_gib=1.0), "data")
    tok = client.tokenizer
    import pydoc_data.topics as topics

    text = " ".join(topics.topics.values())
    ids = tok.encode(text)[: n_examples * 32]
    exs = []
    for e in range(n_examples):
        window = ids[e * 32:(e + 1) * 32]
        strs = tuple(tok.decode([i]) for i in window)
        acts = tuple(float(s.strip().isalpha() and s.strip()[:1].isupper()) for s in strs)
        exs.append(Example(e, strs, acts, True, 0))
    out = {"examples": n_examples}
    for mode in ("logprobs", "json"):
        simulation.score_simulation(client, ["warm"], ["x"], [exs[:2]], mode)  # warm-up
        t0 = time.perf_counter()
        (res,) = simulation.score_simulation(client, ["l/0"], ["Capitalised words."], [exs], mode)
        secs = time.perf_counter() - t0
        out[mode] = {"s_per_example": round(secs / n_examples, 3), "failed": res.n_failed,
                     "prompt_tokens_per_example": round(sum(r.prompt_tokens for r in res.responses) / n_examples),
                     "completion_tokens_per_example": round(sum(r.completion_tokens for r in res.responses) / n_examples),
                     "correlation": res.correlation}
    out["json_over_logprobs_time"] = round(out["json"]["s_per_example"] / out["logprobs"]["s_per_example"], 2)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=40)
    args = ap.parse_args()
    print("bootstrap", bench_bootstrap())
    print("simulation", bench_simulation(args.examples))
