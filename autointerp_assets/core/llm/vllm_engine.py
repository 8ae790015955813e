"""vLLM in-process (``vllm.LLM``) behind the :class:`LLMClient` interface.

Each request is rendered with the tokenizer's chat template (``add_generation_prompt=True``) and its
``prefill`` appended, tokenised here, and enqueued with its *own* freshly built ``SamplingParams``, so
nothing leaks between requests. Requests are added one by one: one that vLLM rejects (too long, bad
regex, too many logprobs...) comes back as ``ChatResponse(error=...)`` and the rest still run.

On CPU the engine uses ``dtype`` (``auto``: bf16 where it is native, else float32), eager mode, prefix caching with 32-token blocks, and by default runs the
engine core in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): no spawned child processes, so it
works inside Dagster steps and scripts without a ``__main__`` guard, starts ~2.5x faster, and is as
fast. In that mode the engine computes with this process's torch threads (no OMP core binding); the
global RNG states and ``torch.set_num_threads`` that vLLM changes at start-up are put back.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import hashlib
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from autointerp_assets.core.caching import resolve_dtype
from autointerp_assets.core.llm.base import (FALLBACK_STOP, ChatRequest, ChatResponse, Sampling, TokenLogprob,
                                             has_chat_template, render_chat)

log = logging.getLogger(__name__)

GIB = 1 << 30
MP_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
KV_ENV = "VLLM_CPU_KVCACHE_SPACE"
_BUILD_LOCK = threading.Lock()  # engines are built one at a time (env vars are set around the build)
_LIVE_IN_PROCESS: set[int] = set()  # ids of open in-process engines (they share torch.distributed state)


def _short_error(e: BaseException, limit: int = 300) -> str:
    msg = " ".join(str(e).split())
    if len(msg) > limit:
        msg = msg[: limit - 3] + "..."
    return f"{type(e).__name__}: {msg}"


def model_revision(model_dir: str) -> str:
    """A cheap, deterministic fingerprint of a local model dir (config, tokenizer files, weight sizes)."""
    p = Path(model_dir)
    if not p.is_dir():
        try:  # a hub name: look at the local HF cache only (never the network)
            from huggingface_hub import try_to_load_from_cache

            cfg = try_to_load_from_cache(model_dir, "config.json")
            if isinstance(cfg, str):
                p = Path(cfg).parent
        except Exception:  # pragma: no cover - best effort
            pass
    if not p.is_dir():
        return "unknown"
    h = hashlib.sha256()
    for name in ("config.json", "generation_config.json", "model.safetensors.index.json",
                 "tokenizer_config.json", "chat_template.jinja"):
        f = p / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("tokenizer.json")):
        h.update(f"{f.name}:{f.stat().st_size}\0".encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _env(values: dict[str, str], force: tuple[str, ...] = ()):
    """Set env vars for the duration of the block: those the user has not set, and those in ``force``."""
    saved = {k: os.environ.get(k) for k in values if k in force or k not in os.environ}
    for k in saved:
        os.environ[k] = values[k]
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _keep_process_state(in_process: bool):
    """An in-process engine seeds the global RNGs and turns ``torch.set_num_threads`` into a no-op
    in *this* process; put both back so the rest of the process (other Dagster steps) is unaffected."""
    if not in_process:
        yield
        return
    import random

    import numpy as np
    import torch

    set_threads = torch.set_num_threads
    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    try:
        yield
    finally:
        torch.set_num_threads = set_threads
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


@contextlib.contextmanager
def _no_dist_cleanup(active: bool):
    if not active:
        yield
        return
    import vllm.v1.engine.core as core

    orig = getattr(core, "cleanup_dist_env_and_memory", None)
    if orig is None:  # pragma: no cover - another vLLM layout
        yield
        return
    core.cleanup_dist_env_and_memory = lambda *a, **k: None
    try:
        yield
    finally:
        core.cleanup_dist_env_and_memory = orig


class VLLMClient:
    """An in-process vLLM engine answering :class:`ChatRequest` batches.

    ``in_process`` (default: ``$VLLM_ENABLE_V1_MULTIPROCESSING`` if set, else True) runs the engine core
    and the CPU worker in this process instead of spawned children.
    """

    engine = "vllm"
    concurrent = False  # one blocking batch at a time: stages send everything in one generate() call

    def __init__(
        self,
        model_dir: str,
        max_model_len: int = 4096,
        max_num_seqs: int = 64,
        kv_cache_gib: float = 2.0,
        seed: int = 0,
        dtype: str = "auto",
        *,
        in_process: bool | None = None,
        max_logprobs: int = 20,
    ):
        self.model_dir = str(model_dir)
        self.model = Path(self.model_dir).name if Path(self.model_dir).is_dir() else self.model_dir
        self.max_model_len = max_model_len
        self._revision = model_revision(self.model_dir)
        self._lock = threading.Lock()  # one batch at a time on the engine
        self._closed = False

        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        if in_process is None:
            in_process = os.environ.get(MP_ENV, "0") == "0"
        self.in_process = in_process

        env: dict[str, str] = {MP_ENV: "0" if in_process else "1"}
        kw: dict[str, Any] = dict(
            model=self.model_dir,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            seed=seed,
            enforce_eager=True,
            enable_prefix_caching=True,
            max_logprobs=max_logprobs,
        )
        # auto: bfloat16 where it is native; on AVX2-only CPUs vLLM's oneDNN linear refuses bf16 and falls back
        # to torch's scalar bf16 matmul, so float32 there (caching.resolve_dtype)
        self.dtype = resolve_dtype(dtype)
        kw["dtype"] = self.dtype
        if self.on_cpu:
            kw.update(block_size=32)
            # vLLM reads VLLM_CPU_KVCACHE_SPACE as whole GiB (and it overrides kv_cache_memory_bytes);
            # a user's value wins, otherwise we set it around the build (integral sizes) or pass bytes.
            if KV_ENV not in os.environ:
                if float(kv_cache_gib).is_integer():
                    env[KV_ENV] = str(int(kv_cache_gib))
                else:
                    kw["kv_cache_memory_bytes"] = int(math.ceil(kv_cache_gib * GIB))
        else:
            kw["kv_cache_memory_bytes"] = int(math.ceil(kv_cache_gib * GIB))

        from vllm import LLM, envs

        t0 = time.perf_counter()
        with _BUILD_LOCK, _env(env, force=(MP_ENV,)), _keep_process_state(in_process):
            with contextlib.suppress(Exception):
                envs.disable_envs_cache()  # an earlier in-process engine froze vllm.envs
            self.llm = LLM(**kw)
            if in_process:
                _LIVE_IN_PROCESS.add(id(self))
        self.start_s = time.perf_counter() - t0
        self.tokenizer = self.llm.get_tokenizer()
        self.chat_template = "model" if has_chat_template(self.tokenizer) else "fallback"
        log.info("vLLM engine for %s ready in %.1fs (in_process=%s)", self.model, self.start_s, in_process)

    # --- LLMClient ------------------------------------------------------------------------------
    def identity(self) -> dict:
        # the dtype changes greedy outputs, so it is part of what the engine is
        return {"engine": "vllm", "model": self.model, "revision": self._revision,
                "chat_template": self.chat_template, "dtype": self.dtype}

    async def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        if not requests:
            return []
        return await asyncio.to_thread(self.generate_sync, list(requests))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _forget(self)
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        with _BUILD_LOCK:
            _LIVE_IN_PROCESS.discard(id(self))
            others = self.in_process and bool(_LIVE_IN_PROCESS)
            # An in-process EngineCore.shutdown() tears down this process's torch.distributed groups,
            # which every in-process engine shares: skip that while another one is still open.
            with _no_dist_cleanup(others), contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()

    # --- internals --------------------------------------------------------------------------------
    def render(self, request: ChatRequest) -> str:
        return render_chat(self.tokenizer, request.messages, request.prefill)

    def sampling_params(self, s: Sampling):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        # a base model's transcript: stop where it would write the next "User:" turn itself
        stop = list(s.stop) + ([x for x in FALLBACK_STOP if x not in s.stop] if self.chat_template == "fallback" else [])
        return SamplingParams(
            temperature=s.temperature,
            max_tokens=s.max_tokens,
            stop=stop or None,
            seed=s.seed,
            logprobs=s.top_logprobs,
            structured_outputs=StructuredOutputsParams(regex=s.regex) if s.regex else None,
        )

    def generate_sync(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        if self._closed:
            return [ChatResponse(error="RuntimeError: the vLLM client is closed") for _ in requests]
        responses: list[ChatResponse | None] = [None] * len(requests)
        with self._lock:
            t0 = time.perf_counter()
            ids: dict[str, int] = {}  # external request id -> index
            internal: list[str] = []  # vLLM's internal ids (external id + random suffix), for abort
            try:
                for i, req in enumerate(requests):
                    try:
                        prompt_ids = self.tokenizer.encode(self.render(req), add_special_tokens=False)
                        params = self.sampling_params(req.sampling)
                        (rid,) = self.llm.enqueue({"prompt_token_ids": prompt_ids}, params, use_tqdm=False)
                        internal.append(rid)
                        ids[rid.split("-", 1)[0]] = i  # outputs carry the external id (LLM's counter)
                    except Exception as e:  # this request only
                        responses[i] = ChatResponse(error=_short_error(e))
                outputs = self.llm.wait_for_completion(use_tqdm=False) if ids else []
            except Exception as e:  # the engine itself failed: every pending request gets the error
                err = _short_error(e)
                with contextlib.suppress(Exception):
                    self.llm.llm_engine.abort_request(internal, internal=True)
                return [r or ChatResponse(error=err) for r in responses]
            latency = time.perf_counter() - t0
        for out in outputs:
            i = ids.get(out.request_id)
            if i is not None:
                responses[i] = self._response(out, requests[i].sampling, latency)
        return [r or ChatResponse(error="RuntimeError: vLLM returned no output for this request")
                for r in responses]

    @staticmethod
    def _response(out, s: Sampling, latency: float) -> ChatResponse:
        comp = out.outputs[0]
        lps = None
        if s.top_logprobs is not None and comp.logprobs is not None:
            lps = []
            for tok_id, pos in zip(comp.token_ids, comp.logprobs):
                pos = pos or {}
                chosen = pos.get(tok_id)
                alts = sorted(
                    ((lp.decoded_token or "", lp.logprob) for lp in pos.values()
                     if lp.rank is not None and lp.rank <= s.top_logprobs),
                    key=lambda t: -t[1],
                )
                lps.append(TokenLogprob(
                    token=(chosen.decoded_token if chosen is not None else None) or "",
                    logprob=chosen.logprob if chosen is not None else float("nan"),
                    top=tuple(alts),
                ))
        return ChatResponse(
            text=comp.text,
            prompt_tokens=len(out.prompt_token_ids or ()),
            cached_tokens=int(getattr(out, "num_cached_tokens", None) or 0),
            completion_tokens=len(comp.token_ids),
            latency_s=latency,
            logprobs=lps,
            finish_reason=getattr(comp, "finish_reason", None),
        )


# --- one engine per (model, settings) per process ---------------------------------------------------
_CLIENTS: dict[tuple, VLLMClient] = {}
_CLIENTS_LOCK = threading.Lock()


def _key(model_dir: str, kw: dict) -> tuple:
    return (str(model_dir), tuple(sorted(kw.items())))


def get_vllm_client(model_dir: str, **kw) -> VLLMClient:
    """The process-wide client for these arguments (built on first use, then reused)."""
    key = _key(model_dir, kw)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None or client._closed:
            client = VLLMClient(model_dir, **kw)
            client._cache_key = key
            _CLIENTS[key] = client
        return client


def _forget(client: VLLMClient) -> None:
    key = getattr(client, "_cache_key", None)
    if key is not None:
        with _CLIENTS_LOCK:
            if _CLIENTS.get(key) is client:
                del _CLIENTS[key]


def close_all() -> None:
    """Shut down every cached engine (also run at interpreter exit)."""
    with _CLIENTS_LOCK:
        clients = list(_CLIENTS.values())
    for c in clients:
        c.close()


atexit.register(close_all)
