"""Gemma Scope: ``params.npz`` with W_enc [d_in, d_sae], W_dec, b_enc, b_dec, threshold (JumpReLU).

Gemma Scope encodes the raw activation (no b_dec subtraction):
``pre = x @ W_enc + b_enc``, ``acts = relu(pre) * (pre > threshold)``.
Residual SAEs read the layer's output (resid_post); map a hookpoint to its sub-directory with
``sae.paths`` (e.g. ``layers.20: layer_20/width_16k/average_l0_71``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import LinearCoder, SparseCoderError

FILES = ("params.npz",)
_KEYS = ("W_enc", "b_enc", "threshold")


def load(d: Path, device: str = "cpu") -> LinearCoder:
    try:
        with np.load(d / "params.npz") as npz:
            have = set(npz.files)
            if set(_KEYS) - have:
                raise SparseCoderError(f"{d / 'params.npz'} lacks {sorted(set(_KEYS) - have)} "
                                       f"(has {sorted(have)}): not a Gemma Scope JumpReLU checkpoint")
            w = {k: torch.from_numpy(np.asarray(npz[k], dtype=np.float32)) for k in _KEYS}
    except (ValueError, OSError) as e:
        if isinstance(e, SparseCoderError):
            raise
        raise SparseCoderError(f"{d / 'params.npz'} is not a readable npz file ({e})") from None
    d_in, d_sae = w["W_enc"].shape
    if w["b_enc"].shape != (d_sae,) or w["threshold"].shape != (d_sae,):
        raise SparseCoderError(f"{d / 'params.npz'}: b_enc {tuple(w['b_enc'].shape)} / threshold "
                               f"{tuple(w['threshold'].shape)} do not match W_enc {(d_in, d_sae)}")
    return LinearCoder(format="gemmascope", architecture="jumprelu", W_enc=w["W_enc"].to(device),
                       b_enc=w["b_enc"], threshold=w["threshold"])
