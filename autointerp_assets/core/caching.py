"""One forward pass over the corpus for every hookpoint, stopped after the deepest hook.

Hooks capture each hookpoint's output; once all have fired the forward pass is aborted, so layers
after the deepest hook (and the LM head) never run. The residuals are encoded by each hookpoint's
sparse coder and only non-zero activations leave this module, as flat numpy arrays per batch.
Position 0 (BOS) is excluded: its norm is ~150x the others in SmolLM2.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


class HookpointError(ValueError):
    pass


class _StopForward(Exception):
    pass


def load_subject_model(model: str, dtype: str = "bfloat16", threads: int = 0):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=_DTYPES[dtype])
    lm.eval()
    return lm, tok


def resolve_hookpoints(model: torch.nn.Module, names: Sequence[str]) -> dict[str, torch.nn.Module]:
    """Map each hookpoint to a module; ``layers.6`` also finds ``model.layers.6`` in a CausalLM."""
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        for prefix in ("", "model.", "transformer.", "gpt_neox.", "model.language_model."):
            if prefix + name in modules:
                out[name] = modules[prefix + name]
                break
        else:
            near = difflib.get_close_matches(name, modules.keys(), n=3, cutoff=0.5)
            raise HookpointError(f"hookpoint {name!r} is not a module of the subject model; nearest: {near}")
    return out


def hook_width(model: torch.nn.Module, hookpoints: Sequence[str]) -> dict[str, int]:
    """d_model at each hookpoint, from one 2-token forward pass."""
    got = {}
    with Residuals(model, hookpoints) as res:
        ids = torch.tensor([[0, 1]])
        for name, t in res.run(ids).items():
            got[name] = int(t.shape[-1])
    return got


class Residuals:
    """Context manager: forward hooks on the hookpoints; ``run(ids)`` returns {hookpoint: [B, T, d]}."""

    def __init__(self, model: torch.nn.Module, hookpoints: Sequence[str]):
        self.model = model
        self.modules = resolve_hookpoints(model, hookpoints)
        self._captured: dict[str, torch.Tensor] = {}
        self._handles = []

    def __enter__(self):
        for name, mod in self.modules.items():
            self._handles.append(mod.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()

    def _hook(self, name):
        def fn(_mod, _inp, output):
            self._captured[name] = output[0] if isinstance(output, tuple) else output
            if len(self._captured) == len(self.modules):
                raise _StopForward  # everything captured: skip the remaining layers

        return fn

    @torch.no_grad()
    def run(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        self._captured = {}
        try:
            self.model(input_ids=input_ids, use_cache=False)
        except _StopForward:
            pass
        missing = set(self.modules) - set(self._captured)
        if missing:
            raise HookpointError(f"hookpoints {sorted(missing)} never ran in the forward pass")
        return self._captured


@dataclass
class BatchActivations:
    """Non-zero activations of one batch of rows, for one hookpoint (row ids are global)."""

    hookpoint: str
    latent: np.ndarray  # int32
    row_id: np.ndarray  # int32
    pos: np.ndarray  # int16
    value: np.ndarray  # float32


def iter_batches(n_rows: int, batch_rows: int, start_row: int = 0) -> Iterator[tuple[int, int]]:
    for a in range(start_row, n_rows, batch_rows):
        yield a, min(a + batch_rows, n_rows)


def encode_batch(residual: torch.Tensor, coder, row_start: int, latent_lo: int, latent_hi: int,
                 hookpoint: str) -> BatchActivations:
    """Encode [B, T, d] residuals, drop BOS (pos 0), keep latents in [latent_lo, latent_hi)."""
    b, t, d = residual.shape
    x = residual[:, 1:, :].reshape(-1, d).to(coder.dtype)
    with torch.no_grad():
        enc = coder.encode(x)
    acts, idx = enc.top_acts, enc.top_indices  # [N, k]
    k = idx.shape[1]
    flat_tok = torch.arange(x.shape[0]).repeat_interleave(k)
    idx, acts = idx.reshape(-1), acts.reshape(-1).float()
    keep = (acts > 0) & (idx >= latent_lo) & (idx < latent_hi)
    tok = flat_tok[keep]
    return BatchActivations(
        hookpoint,
        idx[keep].numpy().astype(np.int32),
        (row_start + tok // (t - 1)).numpy().astype(np.int32),
        (1 + tok % (t - 1)).numpy().astype(np.int16),
        acts[keep].numpy().astype(np.float32),
    )


def cache_batches(model, coders: Mapping[str, object], rows: np.ndarray, batch_rows: int,
                  latent_lo: int, latent_hi: int, start_row: int = 0,
                  progress: Callable[[int, int, float], None] | None = None,
                  ) -> Iterator[tuple[int, int, list[BatchActivations], float]]:
    """Yield (row_start, row_stop, per-hookpoint activations, seconds) per batch, from ``start_row``."""
    n_rows = len(rows)
    with Residuals(model, list(coders)) as res:
        for a, b in iter_batches(n_rows, batch_rows, start_row):
            t0 = time.perf_counter()
            resid = res.run(torch.tensor(rows[a:b], dtype=torch.long))
            out = [encode_batch(resid[h], coders[h], a, latent_lo, latent_hi, h) for h in coders]
            dt = time.perf_counter() - t0
            if progress:
                progress(b, n_rows, dt)
            yield a, b, out, dt


def collect_training_residuals(model, hookpoints: Sequence[str], rows: np.ndarray, batch_rows: int
                               ) -> dict[str, torch.Tensor]:
    """Dense float32 residuals [N, d] per hookpoint for SAE training (BOS positions dropped)."""
    chunks: dict[str, list[torch.Tensor]] = {h: [] for h in hookpoints}
    with Residuals(model, hookpoints) as res:
        for a, b in iter_batches(len(rows), batch_rows):
            resid = res.run(torch.tensor(rows[a:b], dtype=torch.long))
            for h in hookpoints:
                r = resid[h][:, 1:, :]
                chunks[h].append(r.reshape(-1, r.shape[-1]).float())
    return {h: torch.cat(c) for h, c in chunks.items()}
