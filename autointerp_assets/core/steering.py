"""Steering: add a latent's decoder direction at its hookpoint and watch the subject model's output move.

Pure torch + transformers (no storage, no Dagster). What the intervention scorer and the output-centric
explainers share:

- :class:`Steerer` wraps the subject model with one additive hook at a hookpoint: each batch row gets its
  own vector (``strength * W_dec[latent]``, zero for a clean row) added at the **last position** of every
  forward. A prompt's clean prefix (all but its last token) runs once and its KV cache is reused by every
  row and step, so a steered forward costs one token per row: the positions before the last never see
  the intervention, as in the paper (the direction is added from the last prompt token on).
- :func:`calibrate` finds, per latent, the strength whose next-token distribution at the prompts' last
  position sits at a fixed KL divergence from the clean one, KL(clean || steered) averaged over prompts
  (Paulo et al., arXiv 2410.13928: 0.5 nats, within 10 %), all latents at once.
- :func:`token_change` lists the tokens whose next-token probability rises most under that strength,
  averaged over prompts (Gur-Arieh et al., arXiv 2501.08319, "TokenChange").
- :func:`generate` samples continuations of each prompt with and without the intervention using common
  random numbers: one uniform draw per (prompt, step), shared by the clean row and every steered row and
  read through each row's own CDF, so a continuation differs from the clean one only where the
  intervention moved the distribution enough to change the sampled token.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .neutral_prompts import NEUTRAL_PROMPTS  # noqa: F401  (re-exported: the steering stage's default)

VERSION = "steering-v1"  # bump when calibration, hooking or sampling change what is stored


class SteeringError(ValueError):
    """A steering problem (hookpoint, shapes, prompts), stated in one line with the fix."""


class Steerer:
    """The subject model with an additive hook at ``module``'s output (or input, ``add_to_input``).

    While :meth:`steer` holds vectors [B, d], every forward adds row b's vector to position -1 of row b."""

    def __init__(self, model, tokenizer, module: torch.nn.Module, add_to_input: bool = False,
                 bos_id: int | None = None):
        self.model, self.tok, self.bos_id = model, tokenizer, bos_id
        self.vectors: torch.Tensor | None = None
        if add_to_input:
            self._handle = module.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        else:
            self._handle = module.register_forward_hook(self._post_hook)

    def close(self) -> None:
        self._handle.remove()

    def _add(self, h: torch.Tensor) -> torch.Tensor:
        if self.vectors is None:
            return h
        if h.shape[0] != self.vectors.shape[0]:
            raise SteeringError(f"steering vectors for {self.vectors.shape[0]} rows, forward has {h.shape[0]}")
        h = h.clone()
        h[:, -1, :] += self.vectors.to(h.dtype)
        return h

    def _post_hook(self, module, inputs, output):
        if isinstance(output, tuple):
            return (self._add(output[0]), *output[1:])
        return self._add(output)

    def _pre_hook(self, module, args, kwargs):
        if args:
            return (self._add(args[0]), *args[1:]), kwargs
        key = next(iter(kwargs))  # hidden_states passed by name
        return args, {**kwargs, key: self._add(kwargs[key])}

    def encode(self, prompt: str) -> list[int]:
        ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            raise SteeringError(f"steering prompt {prompt!r} has no tokens: remove it from steering.prompts")
        return ([self.bos_id] if self.bos_id is not None else []) + list(ids)

    @torch.inference_mode()
    def prefix(self, ids: Sequence[int]):
        """The clean KV cache of every token but the last (None for a one-token prompt)."""
        if len(ids) < 2:
            return None
        self.vectors = None
        return self.model(torch.tensor([list(ids[:-1])]), use_cache=True).past_key_values

    @torch.inference_mode()
    def step(self, cache, tokens: torch.Tensor, vectors: torch.Tensor):
        """One forward of one token per row ([B] ids) on ``cache`` (mutated), ``vectors`` [B, d] added at the
        hook: next-token logits [B, V] (float32)."""
        self.vectors = vectors
        try:
            out = self.model(tokens.view(-1, 1), past_key_values=cache, use_cache=True)
        finally:
            self.vectors = None
        return out.logits[:, -1, :].float(), out.past_key_values


def _rows_cache(cache, n: int):
    """A copy of a one-row cache repeated for n rows (None stays None)."""
    if cache is None:
        return None
    c = copy.deepcopy(cache)
    c.batch_repeat_interleave(n)
    return c


@dataclass
class PromptState:
    ids: list[int]
    cache: object  # the clean prefix's KV cache, one row


def prepare(steerer: Steerer, prompts: Sequence[str]) -> list[PromptState]:
    return [PromptState(ids, steerer.prefix(ids)) for ids in (steerer.encode(p) for p in prompts)]


def last_logprobs(steerer: Steerer, state: PromptState, vectors: torch.Tensor) -> torch.Tensor:
    """Next-token log-probabilities at the prompt's last position, one row per vector: [R, V]."""
    last = torch.full((vectors.shape[0],), state.ids[-1], dtype=torch.long)
    logits, _ = steerer.step(_rows_cache(state.cache, vectors.shape[0]), last, vectors)
    return torch.log_softmax(logits, dim=-1)


def clean_logprobs(steerer: Steerer, states: Sequence[PromptState], d: int) -> list[torch.Tensor]:
    return [last_logprobs(steerer, s, torch.zeros(1, d))[0] for s in states]


def mean_kl(steerer: Steerer, states: Sequence[PromptState], clean: Sequence[torch.Tensor],
            directions: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
    """KL(clean || steered) of the next-token distribution at each prompt's last position, averaged over
    prompts: one value per latent (row of ``directions``)."""
    vectors = directions * strengths[:, None]
    total = torch.zeros(directions.shape[0])
    for s, c in zip(states, clean):
        lp = last_logprobs(steerer, s, vectors)
        total += (c.exp()[None, :] * (c[None, :] - lp)).sum(-1)
    return total / max(1, len(states))


@dataclass
class Calibration:
    strength: torch.Tensor  # [L] the strength kept (closest to the target when not converged)
    kl: torch.Tensor  # [L] its mean KL
    steps: torch.Tensor  # [L] forwards spent per latent
    converged: torch.Tensor  # [L] bool: |kl - target| <= tolerance * target


def calibrate(steerer: Steerer, states: Sequence[PromptState], directions: torch.Tensor, target_kl: float,
              tolerance: float = 0.1, max_steps: int = 12, initial: torch.Tensor | None = None,
              clean: Sequence[torch.Tensor] | None = None) -> Calibration:
    """Per latent, the strength s with mean KL(clean || clean + s * direction) within ``tolerance`` of
    ``target_kl``, every latent in the same batched forwards.

    Search in log s: with only one side of the target bracketed, step as if KL grew like s^2 (its small-s
    law), at most 2 decades at a time; once bracketed, interpolate log KL linearly in log s between the
    bracket's ends (the midpoint when that leaves the bracket). ``initial``: starting strengths (e.g. the
    latents' max activations); default 1."""
    n = directions.shape[0]
    clean = clean if clean is not None else clean_logprobs(steerer, states, directions.shape[1])
    log_t = math.log(target_kl)
    x = torch.log(initial.clamp_min(1e-6)) if initial is not None else torch.zeros(n)
    lo_x, lo_y = torch.full((n,), -math.inf), torch.full((n,), math.nan)
    hi_x, hi_y = torch.full((n,), math.inf), torch.full((n,), math.nan)
    best_s, best_kl, best_err = torch.zeros(n), torch.zeros(n), torch.full((n,), math.inf)
    steps, done = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.bool)
    for _ in range(max_steps):
        todo = (~done).nonzero().flatten()
        if len(todo) == 0:
            break
        kl = mean_kl(steerer, states, clean, directions[todo], x[todo].exp()).clamp_min(1e-12)
        steps[todo] += 1
        y = kl.log()
        err = (kl - target_kl).abs()
        better = err < best_err[todo]
        best_s[todo] = torch.where(better, x[todo].exp(), best_s[todo])
        best_kl[todo] = torch.where(better, kl, best_kl[todo])
        best_err[todo] = torch.minimum(err, best_err[todo])
        done[todo] = err <= tolerance * target_kl
        below = y < log_t
        lo_x[todo] = torch.where(below, x[todo], lo_x[todo])
        lo_y[todo] = torch.where(below, y, lo_y[todo])
        hi_x[todo] = torch.where(~below, x[todo], hi_x[todo])
        hi_y[todo] = torch.where(~below, y, hi_y[todo])
        for j, i in enumerate(todo.tolist()):
            if done[i]:
                continue
            if math.isfinite(lo_x[i]) and math.isfinite(hi_x[i]):
                span = hi_y[i] - lo_y[i]
                nx = lo_x[i] + (log_t - lo_y[i]) * (hi_x[i] - lo_x[i]) / span if span > 1e-9 else math.nan
                if not (lo_x[i] < nx < hi_x[i]):
                    nx = (lo_x[i] + hi_x[i]) / 2
            else:
                nx = x[i] + max(-2 * math.log(10), min(2 * math.log(10), (log_t - float(y[j])) / 2))
            x[i] = nx
    return Calibration(best_s, best_kl, steps, best_err <= tolerance * target_kl)


def token_change(steerer: Steerer, states: Sequence[PromptState], directions: torch.Tensor,
                 strengths: torch.Tensor, k: int, clean: Sequence[torch.Tensor] | None = None):
    """Per latent, the k tokens whose next-token probability rises most under ``strengths``, averaged over
    the prompts: (ids [L, k], mean probability increase [L, k])."""
    clean = clean if clean is not None else clean_logprobs(steerer, states, directions.shape[1])
    vectors = directions * strengths[:, None]
    total = torch.zeros(directions.shape[0], clean[0].shape[-1])
    for s, c in zip(states, clean):
        total += last_logprobs(steerer, s, vectors).exp() - c.exp()[None, :]
    total /= max(1, len(states))
    inc, ids = total.topk(k, dim=-1)
    return ids, inc


def _uniforms(seed: int, prompt_index: int, n: int) -> torch.Tensor:
    """n uniforms for one prompt's sampling steps, from (seed, prompt index) alone (order-independent)."""
    digest = hashlib.sha256(f"{seed}:{prompt_index}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
    return torch.rand(n, generator=g)


def _pick(logits: torch.Tensor, u: float, temperature: float) -> torch.Tensor:
    """One token per row: greedy at temperature 0, else the inverse CDF of softmax(logits / T) at u."""
    if temperature <= 0:
        return logits.argmax(-1)
    cdf = torch.softmax(logits / temperature, dim=-1, dtype=torch.float64).cumsum(-1)
    idx = torch.searchsorted(cdf, torch.full((logits.shape[0], 1), u * float(cdf[0, -1]), dtype=torch.float64))
    return idx.flatten().clamp_max(logits.shape[-1] - 1)


def generate(steerer: Steerer, states: Sequence[PromptState], directions: torch.Tensor, strengths: torch.Tensor,
             max_new_tokens: int, temperature: float = 1.0, seed: int = 0,
             prompt_indices: Sequence[int] | None = None) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Continuations of each prompt: (clean [P][n], steered [L][P][n]) token ids. Row 0 of every forward is
    the clean one; rows 1..L carry ``strengths[l] * directions[l]`` at every new position (the last prompt
    token first). ``prompt_indices``: each prompt's index in its list, which seeds its draws."""
    n_lat = directions.shape[0]
    vectors = torch.cat([torch.zeros(1, directions.shape[1]), directions * strengths[:, None]])
    clean: list[list[int]] = []
    steered: list[list[list[int]]] = [[] for _ in range(n_lat)]
    for p, s in enumerate(states):
        u = _uniforms(seed, prompt_indices[p] if prompt_indices is not None else p, max_new_tokens)
        cache = _rows_cache(s.cache, n_lat + 1)
        tokens = torch.full((n_lat + 1,), s.ids[-1], dtype=torch.long)
        out = []
        for t in range(max_new_tokens):
            logits, cache = steerer.step(cache, tokens, vectors)
            tokens = _pick(logits, float(u[t]), temperature)
            out.append(tokens)
        ids = torch.stack(out, dim=1).tolist()  # [L + 1, n]
        clean.append(ids[0])
        for i in range(n_lat):
            steered[i].append(ids[i + 1])
    return clean, steered
