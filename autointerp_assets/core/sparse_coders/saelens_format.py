"""SAELens: ``cfg.json`` + ``sae_weights.safetensors`` (W_enc [d_in, d_sae], b_enc, W_dec, b_dec, threshold).

Config field names as SAELens writes them: ``d_in``, ``d_sae``, ``architecture`` (standard | topk |
jumprelu; v5 files say ``standard`` with ``activation_fn_str: topk`` and ``activation_fn_kwargs.k``),
``k`` (topk), ``apply_b_dec_to_input``, ``normalize_activations``, and the hook name either flat
(``hook_name``, v5) or under ``metadata`` / ``meta`` (v6). A ``hook_resid_pre`` hook is the input of
block N, so the coder reads its hooked module's input.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .base import LinearCoder, SparseCoderError

FILES = ("cfg.json", "sae_weights.safetensors")
_INPUT_HOOKS = ("hook_resid_pre", "hook_mlp_in")
_NORMS = ("none", "constant_norm_rescale", "layer_norm")


def hook_name(cfg: dict) -> str | None:
    for meta in (cfg.get("metadata"), cfg.get("meta"), cfg):
        if isinstance(meta, dict) and meta.get("hook_name"):
            return meta["hook_name"]
    return None


def architecture(cfg: dict) -> tuple[str, int | None]:
    arch = cfg.get("architecture", "standard")
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if arch == "topk" or (arch == "standard" and cfg.get("activation_fn_str") == "topk"):
        k = cfg.get("k", kwargs.get("k"))
        if k is None:
            raise SparseCoderError("SAELens topk config has no k (neither 'k' nor activation_fn_kwargs.k)")
        return "topk", int(k)
    if arch in ("standard", "relu"):
        return "relu", None
    if arch == "jumprelu":
        return "jumprelu", None
    raise SparseCoderError(f"SAELens architecture {arch!r} is not supported (standard, topk, jumprelu): "
                           f"convert it or use another checkpoint")


def load(d: Path, device: str = "cpu") -> LinearCoder:
    from safetensors.torch import load_file

    cfg = json.loads((d / "cfg.json").read_text())
    missing = [f for f in ("d_in", "d_sae") if f not in cfg]
    if missing:
        raise SparseCoderError(f"{d / 'cfg.json'} lacks {missing}: not a SAELens config (set sae.format)")
    arch, k = architecture(cfg)
    norm = cfg.get("normalize_activations") or "none"
    if norm not in _NORMS:
        raise SparseCoderError(f"{d}: normalize_activations={norm!r} needs a scaling factor that is not in the "
                               f"checkpoint: fold it into W_enc/b_dec first (supported: {list(_NORMS)})")
    if (cfg.get("reshape_activations") or "none") != "none":
        raise SparseCoderError(f"{d}: reshape_activations={cfg['reshape_activations']!r} (attention hook_z) "
                               f"is not supported: use a residual or MLP SAE")
    w = load_file(str(d / "sae_weights.safetensors"), device=device)
    need = {"W_enc", "b_enc"} | ({"b_dec"} if cfg.get("apply_b_dec_to_input", True) else set())
    if arch == "jumprelu" and "threshold" not in w and "log_threshold" in w:
        w["threshold"] = torch.exp(w["log_threshold"])
    need |= {"threshold"} if arch == "jumprelu" else set()
    if need - set(w):
        raise SparseCoderError(f"{d / 'sae_weights.safetensors'} lacks {sorted(need - set(w))} "
                               f"for a SAELens {arch} SAE: wrong file or architecture")
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    if tuple(w["W_enc"].shape) != (d_in, d_sae):
        raise SparseCoderError(f"{d}: W_enc has shape {tuple(w['W_enc'].shape)} but cfg.json says "
                               f"d_in={d_in}, d_sae={d_sae}: the weights do not belong to this config")
    hook = hook_name(cfg) or ""
    return LinearCoder(format="saelens", architecture=arch, W_enc=w["W_enc"], b_enc=w["b_enc"],
                       b_dec=w["b_dec"] if cfg.get("apply_b_dec_to_input", True) else None,
                       threshold=w.get("threshold"), k=k, hook_input=hook.endswith(_INPUT_HOOKS), normalize=norm)
