"""The projects the tests run: the tiny project (2 layers x 2 latent ranges of SmolLM2) and its LLM settings.

Importable without pytest (benchmarks and ``tools/same_rows.py`` run the same project).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Same LLM settings as the engine tests so one vLLM engine serves the whole session.
TEST_LLM = {"engine": "vllm", "model": "smollm2", "max_model_len": 2048, "max_num_seqs": 64, "kv_cache_gib": 1.0}

def tiny(database: str | Path) -> dict:
    """The tiny project writing to ``database``."""
    return {**_TINY, "database": str(database)}


_TINY = {
    "name": "tiny-test",
    "workdir": str(ROOT / "data"),  # the converted model is shared with `make run`
    "subject_model": "smollm2",
    "hookpoints": ["layers.1", "layers.3"],
    "corpus": {"n_tokens": 16512, "ctx_len": 129},
    "sae": {"expansion_factor": 2, "k": 16, "train_tokens": 16384, "epochs": 1, "batch_size": 1024},
    "latents": {"start": 0, "stop": 64, "range_size": 32, "max_per_range": 4},
    "caching": {"batch_rows": 16},
    # centred windows + embedding hard negatives: the full examples path end to end (MiniLM, ~15 s)
    "sampler": {"min_examples": 12, "n_quantiles": 2, "n_train": 6, "n_test": 4, "n_non_activating": 4,
                "example_ctx_len": 16, "window": "centred", "non_activating_source": "embedding"},
    "explainer": {"llm": TEST_LLM, "max_tokens": 32},
    "scorer": {"examples_per_prompt": 4},
    # stage scores' other scorers: the cheap one + the detection control here (every scorer is exercised by
    # test_scorers.py)
    "scoring": {"scorers": ["embedding"], "control_scorers": ["detection", "embedding"],
                       "bootstrap_samples": 200},
}
