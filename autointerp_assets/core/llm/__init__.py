"""LLM engines behind one async interface (:mod:`.base`): vLLM in-process or an OpenAI-compatible server.

Engine modules are imported lazily: ``import autointerp_assets.core.llm`` never imports vLLM.
"""

from __future__ import annotations

from autointerp_assets.core.config import LLMConfig
from autointerp_assets.core.llm.base import (
    ChatRequest,
    ChatResponse,
    LLMClient,
    Sampling,
    TokenLogprob,
)

__all__ = ["ChatRequest", "ChatResponse", "LLMClient", "Sampling", "TokenLogprob", "make_client"]


def make_client(cfg: LLMConfig, workdir: str) -> LLMClient:
    """The client ``cfg`` names. vLLM engines are shared per process (same model + settings -> same engine)."""
    if cfg.engine == "vllm":
        if cfg.base_url is not None:
            raise ValueError("llm.base_url is set but llm.engine is 'vllm': set engine: openai to use the "
                             "server, or remove base_url")
        from autointerp_assets.core.caching import resolve_dtype
        from autointerp_assets.core.subject_model import resolve_model
        from autointerp_assets.core.llm.vllm_engine import get_vllm_client

        return get_vllm_client(
            resolve_model(cfg.model, workdir),
            max_model_len=cfg.max_model_len,
            max_num_seqs=cfg.max_num_seqs,
            kv_cache_gib=cfg.kv_cache_gib,
            dtype=resolve_dtype(cfg.dtype),  # resolved: auto and its value share one engine
        )
    if cfg.engine == "openai":
        if not cfg.base_url:
            raise ValueError("llm.engine is 'openai' but llm.base_url is not set: set it to the server URL, "
                             "e.g. http://127.0.0.1:8000/v1")
        from autointerp_assets.core.llm.openai_engine import OpenAIClient

        return OpenAIClient(
            cfg.model,
            cfg.base_url,
            api_key_env=cfg.api_key_env,
            max_concurrency=cfg.max_concurrency,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            backoff_base_s=cfg.backoff_base_s,
            backoff_max_s=cfg.backoff_max_s,
        )
    raise ValueError(f"llm.engine {cfg.engine!r} is unknown: use 'vllm' or 'openai'")
