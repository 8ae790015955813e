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

from autointerp_assets_tests.support.projects import ROOT, TEST_LLM, tiny  # noqa: F401  (tests import them here)

TMP = Path(tempfile.mkdtemp(prefix="autointerp-tests-"))

TINY = tiny(TMP / "autointerp.duckdb")


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
