"""EleutherAI sparsify: ``<hookpoint>/cfg.json`` + ``sae.safetensors`` (TopK SAEs and transcoders).

Loaded with sparsify itself (encoder only); encoded by the shared affine + TopK path of ``base``
(sparsify's own ``encode`` = ReLU over every latent, then TopK: the same positive set). ``cfg.json``'s ``transcode: true`` means the
coder reads the hooked module's *input* (it predicts the module's output from it), so caching hooks
the input for that hookpoint; a skip connection only affects decoding.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .base import SparseCoder, SparseCoderError, topk_activate

FILES = ("cfg.json", "sae.safetensors")


class SparsifyCoder(SparseCoder):
    format = "sparsify"
    architecture = "topk"

    def __init__(self, sae):
        self.sae = sae
        self.d_in, self.num_latents, self.k = int(sae.d_in), int(sae.num_latents), int(sae.cfg.k)
        self.hook_input = bool(sae.cfg.transcode)
        self.dtype = sae.dtype
        if sae.cfg.activation != "topk":
            self.architecture = sae.cfg.activation

    @torch.no_grad()
    def affine(self):
        w = self.sae.encoder.weight.float().T  # [d_in, num_latents]
        b = self.sae.encoder.bias.float()
        if not self.sae.cfg.transcode:  # SAEs encode x - b_dec; transcoders the module input as is
            b = b - self.sae.b_dec.float() @ w
        return w, b

    def activate(self, pre):
        if self.architecture == "groupmax":  # the max of each of k equal groups of latents
            vals, idx = pre.unflatten(-1, (self.k, -1)).max(dim=-1)
            return vals.relu_(), idx + torch.arange(0, self.num_latents, self.num_latents // self.k)
        return topk_activate(pre, self.k)


def load(d: Path, device: str = "cpu") -> SparsifyCoder:
    from safetensors import safe_open
    from sparsify import SparseCoder as Sparsify

    cfg = json.loads((d / "cfg.json").read_text())
    if "d_in" not in cfg:
        raise SparseCoderError(f"{d / 'cfg.json'} has no d_in: not a sparsify config (set sae.format)")
    with safe_open(str(d / "sae.safetensors"), framework="pt") as f:
        missing = {"encoder.weight", "encoder.bias", "b_dec"} - set(f.keys())
    if missing:  # sparsify loads encoder-only with strict=False: check the encoder is really there
        raise SparseCoderError(f"{d / 'sae.safetensors'} lacks {sorted(missing)}: not a sparsify checkpoint")
    try:
        sae = Sparsify.load_from_disk(d, device=device, decoder=False)
    except Exception as e:  # missing tensors, wrong shapes
        raise SparseCoderError(f"{d}: not a loadable sparsify checkpoint ({str(e).splitlines()[0][:160]})") from None
    return SparsifyCoder(sae)
