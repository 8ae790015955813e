"""Surprisal scorer: how much does the explanation lower a base LM's loss on an example?

Per example: information value = mean token loss of the example after a neutral description minus after
the explanation (nats per token; > 0 = the explanation made the text more predictable). Score per latent =
AUROC of that value, activating vs non-activating: a good explanation helps the activating examples more.
Any causal LM loaded with transformers serves; offline the subject model does (SmolLM2-135M).

The description is run once per latent and its KV cache shared by the latent's examples (batched, bf16);
the neutral-description losses are computed once per distinct example text of the partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ..records import Example
from .metrics import auroc

NEUTRAL = "Various unrelated pieces of text."
PROMPT_VERSION = "surprisal-v1"


def prefix(description: str) -> str:
    return f"The following text matches this description: {description}\nText:"


@dataclass
class SurprisalScore:
    key: str
    example_ids: list[int]
    activating: list[bool]
    quantiles: list[int]
    value: list[float]  # loss(neutral) - loss(explanation), nats per token
    auroc: float | None


def dtype_name(dtype: str = "auto") -> str:
    """The torch dtype ``load_base_lm`` loads the base LM in, as ``str(model.dtype)`` spells it (a fingerprint
    input known before the model is loaded)."""
    from ..caching import resolve_dtype

    return f"torch.{resolve_dtype(dtype)}"


@lru_cache(maxsize=2)
def load_base_lm(model_dir: str, dtype: str = "auto"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..caching import resolve_dtype

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, resolve_dtype(dtype)))
    model.eval()
    return tok, model


def example_text(ex: Example) -> str:
    return "".join(ex.str_tokens)


def mean_losses(tok, model, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
    """Mean next-token loss (nats) of each ``text`` given ``context`` before it, for (context, text) pairs.

    Left-padded batches, so every text ends at the last position and only the logits of the last
    (longest text + 1) positions are computed (the vocabulary projection is a fifth of SmolLM2's work)."""
    import torch

    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    seqs = []
    for context, text in pairs:
        c = bos + tok(context, add_special_tokens=False)["input_ids"]
        t = tok(text, add_special_tokens=False)["input_ids"] or [tok.eos_token_id or 0]
        seqs.append((c, t))
    out = np.zeros(len(seqs))
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]) + len(seqs[i][1]))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            width = max(len(seqs[i][0]) + len(seqs[i][1]) for i in idx)
            keep = max(len(seqs[i][1]) for i in idx) + 1  # logits predicting every text token
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                c, t = seqs[i]
                ids[r, width - len(c) - len(t):] = torch.tensor(c + t)
                mask[r, width - len(c) - len(t):] = 1
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep).logits.float()
            # logits[:, j] predicts token width - keep + j + 1
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, width - keep + 1:],
                                                    reduction="none")
            for r, i in enumerate(idx):
                n = len(seqs[i][1])
                out[i] = float(nll[r, -n:].mean())
    return out


def losses_after(tok, model, context: str, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """Mean next-token loss (nats) of each text after the same ``context``: the context is run once and its
    KV cache is shared by every text (right-padded batches of texts only), so a latent's 40 examples cost
    40 x 32 tokens, not 40 x (description + 32)."""
    import copy

    import torch

    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    c = bos + tok(context, add_special_tokens=False)["input_ids"]
    seqs = [tok(t, add_special_tokens=False)["input_ids"] or [tok.eos_token_id or 0] for t in texts]
    out = np.zeros(len(seqs))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with torch.inference_mode():
        first = model(input_ids=torch.tensor([c]), use_cache=True)
        prefix_cache, last = first.past_key_values, first.logits[0, -1].float()
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), len(c) + width), dtype=torch.long)
            mask[:, :len(c)] = 1
            for r, i in enumerate(idx):
                ids[r, :len(seqs[i])] = torch.tensor(seqs[i])
                mask[r, len(c):len(c) + len(seqs[i])] = 1
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(idx))
            pos = torch.arange(len(c), len(c) + width).expand(len(idx), width)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                           use_cache=True).logits.float()
            # token 0 is predicted by the context's last position, token j by logits[:, j - 1]
            pred = torch.cat([last.expand(len(idx), 1, -1), logits[:, :-1]], dim=1)
            nll = torch.nn.functional.cross_entropy(pred.transpose(1, 2), ids, reduction="none")
            for r, i in enumerate(idx):
                out[i] = float(nll[r, :len(seqs[i])].mean())
    return out


def score_surprisal(tok, model, keys: Sequence[str], explanations: Sequence[str],
                    examples: Sequence[Sequence[Example]], batch_size: int = 32) -> list[SurprisalScore]:
    texts = sorted({example_text(ex) for exs in examples for ex in exs})
    neutral = dict(zip(texts, losses_after(tok, model, prefix(NEUTRAL), texts, batch_size)))
    out = []
    for key, e, exs in zip(keys, explanations, examples):
        explained = losses_after(tok, model, prefix(e), [example_text(ex) for ex in exs], batch_size) if exs else []
        vals = [float(neutral[example_text(ex)] - explained[j]) for j, ex in enumerate(exs)]
        act = [ex.activating for ex in exs]
        out.append(SurprisalScore(key, [ex.example_id for ex in exs], act, [ex.quantile for ex in exs], vals,
                                  auroc(act, vals) if exs else None))
    return out
