"""The one encoder interface every sparse-coder format is adapted to.

``encode(x)`` takes ``[N, d_in]`` activations read at the hookpoint and returns ``(values, indices)``,
both ``[N, m]``: the active latents of each token (entries with value <= 0 are padding). TopK coders
return their k; ReLU / JumpReLU coders return as many columns as the busiest token of the batch has
active latents, so nothing dense ever leaves this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


class SparseCoderError(ValueError):
    """A sparse-coder problem (layout, shape, format), stated in one line with the fix."""


class SparseCoder(ABC):
    """A loaded encoder for one hookpoint."""

    format: str  # sparsify | saelens | gemmascope
    architecture: str  # topk | relu | jumprelu
    d_in: int
    num_latents: int
    k: int | None = None
    hook_input: bool = False  # read the hooked module's input (transcoders, resid_pre) instead of its output
    dtype: torch.dtype = torch.float32

    @abstractmethod
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, d_in] -> (values [N, m], indices [N, m]) of the active latents."""


def dense_to_sparse(acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense [N, L] activations (zeros inactive) -> (values, indices) with m = max active per token."""
    m = int((acts > 0).sum(-1).max()) if acts.numel() else 0
    if m == 0:
        empty = acts.new_zeros((acts.shape[0], 0))
        return empty, empty.long()
    vals, idx = acts.topk(m, dim=-1, sorted=False)
    return vals, idx


class LinearCoder(SparseCoder):
    """``pre = (x - b_dec * sub_b_dec) @ W_enc + b_enc``, then ReLU, TopK(k) or JumpReLU(threshold).

    Covers SAELens (standard / topk / jumprelu) and Gemma Scope; the decoder is not needed to encode
    and is not kept in memory.
    """

    def __init__(self, *, format: str, architecture: str, W_enc: torch.Tensor, b_enc: torch.Tensor,
                 b_dec: torch.Tensor | None = None, threshold: torch.Tensor | None = None, k: int | None = None,
                 hook_input: bool = False, normalize: str = "none"):
        self.format, self.architecture = format, architecture
        self.W_enc = W_enc.float().contiguous()
        self.b_enc = b_enc.float()
        self.b_dec = None if b_dec is None else b_dec.float()
        self.threshold = None if threshold is None else threshold.float()
        self.k, self.hook_input, self.normalize = k, hook_input, normalize
        self.d_in, self.num_latents = self.W_enc.shape
        self.dtype = torch.float32

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.float()
        if self.normalize == "constant_norm_rescale":  # SAELens: scale each token to norm sqrt(d_in)
            x = x * (self.d_in ** 0.5) / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        elif self.normalize == "layer_norm":
            x = x - x.mean(-1, keepdim=True)
            x = x / (x.std(-1, keepdim=True) + 1e-5)
        if self.b_dec is not None:
            x = x - self.b_dec
        pre = torch.addmm(self.b_enc, x, self.W_enc)
        if self.architecture == "topk":
            vals, idx = pre.topk(self.k, dim=-1, sorted=False)
            return vals.relu(), idx
        acts = pre.relu()
        if self.architecture == "jumprelu":
            acts = acts * (pre > self.threshold)
        return dense_to_sparse(acts)


@dataclass
class CoderInfo:
    """What the sparse_coders table records about a loaded coder."""

    hookpoint: str
    path: str
    format: str
    architecture: str
    d_in: int
    num_latents: int
    k: int | None
    hook_input: bool
    digest: str
