"""Sparse coders: load sparsify-layout checkpoints, or train TopK SAEs for the offline default.

On-disk layout (EleutherAI sparsify): ``<dir>/<hookpoint>/cfg.json`` + ``sae.safetensors``.
Only the requested hookpoints are read (delphi's hub path loads every layer of a repo).
Training follows sparsify's recipe: decoder-bias initialised at the data mean, unit-norm decoder,
gradient parallel to decoder directions removed, SignSGD under a schedule-free wrapper.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import SaeConfig
from .fingerprint import file_digest


class SparseCoderError(ValueError):
    pass


@dataclass
class CoderInfo:
    hookpoint: str
    path: str
    d_in: int
    num_latents: int
    k: int | None
    digest: str
    fvu: float | None = None
    dead_fraction: float | None = None
    train_tokens: int | None = None


def checkpoint_dir(root: Path, hookpoint: str) -> Path:
    return Path(root) / hookpoint


def load_sparse_coder(root: str | Path, hookpoint: str, device: str = "cpu"):
    from sparsify import SparseCoder

    d = checkpoint_dir(Path(root), hookpoint)
    if not Path(root).exists():
        raise SparseCoderError(f"sparse coder dir {root} does not exist: fix sae.source")
    if not (d / "cfg.json").exists() or not (d / "sae.safetensors").exists():
        have = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
        raise SparseCoderError(
            f"{d} lacks cfg.json + sae.safetensors (sparsify layout <dir>/<hookpoint>/...); "
            f"hookpoints present: {have[:10]}"
        )
    return SparseCoder.load_from_disk(d, device=device)


def coder_info(root: str | Path, hookpoint: str, sae=None) -> CoderInfo:
    d = checkpoint_dir(Path(root), hookpoint)
    cfg = json.loads((d / "cfg.json").read_text())
    digest = file_digest(d / "sae.safetensors", limit=None) + ":" + file_digest(d / "cfg.json", limit=None)
    if sae is None:
        sae = load_sparse_coder(root, hookpoint)
    return CoderInfo(hookpoint, str(d), int(sae.d_in), int(sae.num_latents), cfg.get("k"), digest)


def _fvu(sae, x: torch.Tensor, chunk: int = 8192) -> float:
    num = 0.0
    den = float((x - x.mean(0)).pow(2).sum())
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            xb = x[i : i + chunk]
            out = sae(xb)
            num += float((xb - out.sae_out).pow(2).sum())
    return num / max(den, 1e-12)


def train_topk_sae(x: torch.Tensor, cfg: SaeConfig, log=print):
    """Train one TopK SAE on activations ``x`` [N, d_in] (float32). Returns (sae, stats dict)."""
    from schedulefree import ScheduleFreeWrapper
    from sparsify import SparseCoder, SparseCoderConfig
    from sparsify.sign_sgd import SignSGD

    torch.manual_seed(cfg.seed)
    n, d_in = x.shape
    n_test = min(max(n // 20, 256), n // 2)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
    test, train = x[perm[:n_test]], x[perm[n_test:]]
    sae = SparseCoder(d_in, SparseCoderConfig(expansion_factor=cfg.expansion_factor, k=cfg.k), dtype=torch.float32)
    with torch.no_grad():
        sae.b_dec.data = train.mean(0)
    lr = 5e-3 / math.sqrt(sae.num_latents / 2**14)
    opt = ScheduleFreeWrapper(SignSGD([dict(params=sae.parameters(), lr=lr)]), momentum=0.95)
    opt.train()
    fired = torch.zeros(sae.num_latents, dtype=torch.bool)
    t0 = time.time()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed + epoch + 1))
        for i in range(0, len(train), cfg.batch_size):
            xb = train[order[i : i + cfg.batch_size]]
            out = sae(xb)
            out.fvu.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            opt.zero_grad()
            sae.set_decoder_norm_to_unit_norm()
            fired[out.latent_indices.flatten()] = True
        log(f"SAE epoch {epoch + 1}/{cfg.epochs}: {time.time() - t0:.1f}s")
    opt.eval()  # schedule-free: switch to the averaged weights before use
    fvu = _fvu(sae, test)
    stats = {"fvu": fvu, "dead_fraction": float(1 - fired.float().mean()), "train_tokens": len(train),
             "seconds": time.time() - t0}
    log(f"SAE trained: test FVU {fvu:.3f}, never-fired {stats['dead_fraction']:.1%} of {sae.num_latents}")
    return sae, stats
