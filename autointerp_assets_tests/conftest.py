"""Test setup: a tiny project config (real SmolLM2, real SAE training, real vLLM, real DuckDB).

The config is written and AUTOINTERP_CONFIG set at import time, before any test imports the
Dagster definitions (their partitions are derived from the config when the module loads).

Rule NO-FREE-TEXT: no test asserts words of free generated text. What a tiny model says greedily depends
on the numeric path (bf16 vs float32, AMX vs AVX2); tests assert grammar-fixed answers, determinism, token
counts, logprobs (against transformers in the same dtype), statuses and rows (see core/test_llm.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TMP = Path(tempfile.mkdtemp(prefix="autointerp-tests-"))

# Same LLM settings as the engine tests so one vLLM engine serves the whole session.
TEST_LLM = {"engine": "vllm", "model": "smollm2", "max_model_len": 2048, "max_num_seqs": 64, "kv_cache_gib": 1.0}

TINY = {
    "name": "tiny-test",
    "database": str(TMP / "autointerp.duckdb"),
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
    # asset scores also runs stage scores_more: the cheap scorer + the detection control here (every scorer
    # is exercised by test_scores_more.py)
    "scoring_extras": {"scorers": ["embedding"], "control_scorers": ["detection", "embedding"],
                       "bootstrap_samples": 200},
}


def write_config(path: Path, overrides: dict | None = None) -> Path:
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    for k, v in (overrides or {}).items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    path.write_text(yaml.safe_dump(cfg))
    return path


CONFIG_PATH = write_config(TMP / "project.yaml")
os.environ["AUTOINTERP_CONFIG"] = str(CONFIG_PATH)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return TMP


@pytest.fixture(scope="session", autouse=True)
def _close_engines():
    yield
    try:
        from autointerp_assets.core.llm.vllm_engine import close_all
    except Exception:  # vllm missing: nothing was started
        return
    close_all()
