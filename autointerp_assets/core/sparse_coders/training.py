"""Train TopK SAEs for the offline default (saved in sparsify layout, so they load like any checkpoint).

Follows sparsify's recipe: decoder-bias initialised at the data mean, unit-norm decoder, gradient
parallel to decoder directions removed, SignSGD under a schedule-free wrapper.
"""

from __future__ import annotations

import math
import time

import torch

from ..config import SaeConfig


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
