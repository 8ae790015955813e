"""One forward pass over the corpus for every hookpoint, stopped after the deepest hook.

Hooks capture each hookpoint's output, or its input for coders that read a module's input
(transcoders, ``resid_pre`` SAEs) -- chosen per hookpoint. Once all have fired the forward pass is
aborted, so layers after the deepest hook (and the LM head) never run. The activations are encoded
by each hookpoint's sparse coder and only non-zero latents leave this module, as flat numpy arrays
per batch. Separator positions (position 0 and every BOS / EOS inside a row, see ``separators``) are
excluded: they are not data, and their norm is ~150x the others in SmolLM2.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
import re
from typing import Collection, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .separators import data_mask

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


def native_bf16() -> bool:
    """Whether bfloat16 matmuls run natively here: a CUDA device, or a CPU with oneDNN's bf16 kernels
    (AVX-512 / AMX). Without them (AVX2-only CPUs) torch runs bf16 matmuls in a scalar fallback."""
    if torch.cuda.is_available():
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(name: str | None) -> str | None:
    """``auto`` -> ``bfloat16`` where it is native, else ``float32`` (measured on an AVX2-only EPYC: a bf16
    SmolLM2 forward 5.5x slower than float32, an SAE encode matmul ~70-100x); other names pass through. Stages
    fingerprint the resolved name, so a cache made in float32 is never mistaken for a bf16 one."""
    if name != "auto":
        return name
    return "bfloat16" if native_bf16() else "float32"


def torch_dtype(name: str | None) -> torch.dtype | None:
    """A config dtype name (``auto`` resolved) as a torch dtype; None stays None (the coders' float32 reference)."""
    return _DTYPES[resolve_dtype(name)] if name else None


class HookpointError(ValueError):
    pass


class _StopForward(Exception):
    pass


def load_subject_model(model: str, dtype: str = "auto", threads: int = 0):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype(dtype))
    lm.eval()
    return lm, tok


def resolve_hookpoints(model: torch.nn.Module, names: Sequence[str]) -> dict[str, torch.nn.Module]:
    """Map each hookpoint to a module; ``layers.6`` also finds ``model.layers.6`` in a CausalLM."""
    return {name: mod for name, (_full, mod) in _named(model, names).items()}


def hook_width(model: torch.nn.Module, hookpoints: Sequence[str], inputs: Collection[str] = ()) -> dict[str, int]:
    """Width at each hookpoint (its input for those in ``inputs``), from one 2-token forward pass."""
    with Residuals(model, hookpoints, inputs) as res:
        return {name: int(t.shape[-1]) for name, t in res.run(torch.tensor([[0, 1]])).items()}


def meta_model(model_dir: str) -> torch.nn.Module:
    """The subject model's module tree on the meta device: names and shapes without loading weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))


_BLOCK = re.compile(r"(^|\.)(layers|h|blocks|layer)\.\d+$")


def expected_width(model: torch.nn.Module, hookpoint: str, hook_input: bool) -> int | None:
    """Width at a hookpoint known without running the model: residual blocks and Linear modules; else None."""
    name, mod = _named(model, [hookpoint])[hookpoint]
    if isinstance(mod, torch.nn.Linear):
        return mod.in_features if hook_input else mod.out_features
    if _BLOCK.search(name):
        cfg = getattr(model, "config", None)
        cfg = getattr(cfg, "get_text_config", lambda: cfg)()
        return getattr(cfg, "hidden_size", None)
    return None


def _named(model: torch.nn.Module, names: Sequence[str]) -> dict[str, tuple[str, torch.nn.Module]]:
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        for prefix in ("", "model.", "transformer.", "gpt_neox.", "model.language_model."):
            if prefix + name in modules:
                out[name] = (prefix + name, modules[prefix + name])
                break
        else:
            near = difflib.get_close_matches(name, modules.keys(), n=3, cutoff=0.5)
            raise HookpointError(f"hookpoint {name!r} is not a module of the subject model; nearest: {near}")
    return out


class Residuals:
    """Context manager: hooks on the hookpoints; ``run(ids)`` returns {hookpoint: [B, T, d]}.

    Hookpoints in ``inputs`` capture the module's input (a forward pre-hook), the others its output.
    """

    def __init__(self, model: torch.nn.Module, hookpoints: Sequence[str], inputs: Collection[str] = ()):
        self.model = model
        self.modules = resolve_hookpoints(model, hookpoints)
        self.inputs = set(inputs)
        self._captured: dict[str, torch.Tensor] = {}
        self._handles = []

    def __enter__(self):
        for name, mod in self.modules.items():
            if name in self.inputs:
                self._handles.append(mod.register_forward_pre_hook(self._pre_hook(name), with_kwargs=True))
            else:
                self._handles.append(mod.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()

    def _store(self, name, tensor):
        self._captured[name] = tensor
        if len(self._captured) == len(self.modules):
            raise _StopForward  # everything captured: skip the remaining layers

    def _hook(self, name):
        def fn(_mod, _inp, output):
            self._store(name, output[0] if isinstance(output, tuple) else output)

        return fn

    def _pre_hook(self, name):
        def fn(_mod, args, kwargs):
            self._store(name, args[0] if args else kwargs["hidden_states"])

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

    @staticmethod
    def concat(parts: Sequence["BatchActivations"]) -> "BatchActivations":
        """One hookpoint's activations of consecutive batches as one (still in token order)."""
        if len(parts) == 1:
            return parts[0]
        return BatchActivations(parts[0].hookpoint, *(np.concatenate([getattr(p, f) for p in parts])
                                                      for f in ("latent", "row_id", "pos", "value")))


def iter_batches(n_rows: int, batch_rows: int, start_row: int = 0) -> Iterator[tuple[int, int]]:
    for a in range(start_row, n_rows, batch_rows):
        yield a, min(a + batch_rows, n_rows)


def encode_batch(residual: torch.Tensor, coder, row_start: int, latent_lo: int, latent_hi: int,
                 hookpoint: str, dtype: torch.dtype | None = None, data: np.ndarray | None = None) -> BatchActivations:
    """Encode [B, T, d] activations with any SparseCoder (matmul in ``dtype``; None = float32) at the data
    positions only, keep latents in [lo, hi). ``data`` ([B, T] bool, ``separators.data_mask``) says which
    positions are data; None = every position but 0 (a corpus without separators inside its rows)."""
    b, t, d = residual.shape
    if data is None:
        data = np.ones((b, t), dtype=bool)
        data[:, 0] = False
    where = torch.from_numpy(np.flatnonzero(data))  # flat (row * t + pos) of the encoded tokens, in token order
    x = residual.reshape(-1, d).index_select(0, where)
    acts, idx = coder.encode(x, dtype)  # [N, m]
    m = idx.shape[1]
    idx, acts = idx.reshape(-1), acts.reshape(-1)
    keep = (acts > 0) & (idx >= latent_lo) & (idx < latent_hi)
    flat = keep.nonzero().squeeze(1)
    tok = where[flat // max(m, 1)]
    return BatchActivations(
        hookpoint,
        idx[flat].to(torch.int32).numpy(),
        (row_start + tok // t).to(torch.int32).numpy(),
        (tok % t).to(torch.int16).numpy(),
        acts[flat].float().numpy(),
    )


def cache_batches(model, coders: Mapping[str, object], batches: Iterable[tuple[int, np.ndarray]],
                  latent_lo: int, latent_hi: int, encode_dtype: str | None = None,
                  separators: Collection[int] = ()) -> Iterator[tuple[int, int, list[BatchActivations], float]]:
    """For each (row_start, rows) batch: one early-stopped forward pass, every hookpoint encoded at the data
    positions (position 0 and every ``separators`` token excluded).

    Yields (row_start, row_stop, per-hookpoint activations, seconds). ``batches`` is consumed lazily,
    so a caller streaming rows from storage keeps memory independent of the corpus size.
    """
    inputs = [h for h, c in coders.items() if getattr(c, "hook_input", False)]
    dtype = torch_dtype(encode_dtype)
    with Residuals(model, list(coders), inputs) as res:
        for a, rows in batches:
            t0 = time.perf_counter()
            resid = res.run(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)))
            data = data_mask(np.asarray(rows), separators)
            out = [encode_batch(resid[h], coders[h], a, latent_lo, latent_hi, h, dtype, data) for h in coders]
            yield a, a + len(rows), out, time.perf_counter() - t0


def collect_training_residuals(model, hookpoints: Sequence[str], rows: np.ndarray, batch_rows: int,
                               separators: Collection[int] = ()) -> dict[str, torch.Tensor]:
    """Dense float32 residuals [N, d] per hookpoint for SAE training, at the data positions only (position 0
    and every ``separators`` token dropped: an SAE never learns the separators' outsized norms)."""
    chunks: dict[str, list[torch.Tensor]] = {h: [] for h in hookpoints}
    with Residuals(model, hookpoints) as res:
        for a, b in iter_batches(len(rows), batch_rows):
            resid = res.run(torch.tensor(rows[a:b], dtype=torch.long))
            keep = torch.from_numpy(np.flatnonzero(data_mask(np.asarray(rows[a:b]), separators)))
            for h in hookpoints:
                r = resid[h]
                chunks[h].append(r.reshape(-1, r.shape[-1]).index_select(0, keep).float())
    return {h: torch.cat(c) for h, c in chunks.items()}
