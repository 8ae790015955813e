"""Document separators: the BOS / EOS / document-boundary tokens that are outside the data.

The corpus is packed GPT-style: every row starts with ``corpus.bos_token`` and the same token separates
the documents inside a row (``corpus.pack_rows``). A separator carries no text of its own and, in most
models, a residual norm far above the other tokens' (SmolLM2: ~150x), so a latent firing there describes
the boundary, not the language. Every position holding a separator id -- position 0 and every one inside
a row -- is therefore outside the data: it is never cached, never used to train an SAE, never counted in
densities, windows, statistics or flags, and never highlighted in an example.

The separator ids are the configured ``corpus.bos_token`` plus the tokenizer's own BOS and EOS tokens
(a corpus that ships its own boundary tokens may use either). They are part of the SAE-training and
activation-cache fingerprints.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import CorpusConfig
from .corpus import bos_id

SEPARATOR_VERSION = "every-separator-v1"  # every BOS / EOS position is outside the data (was: position 0 only)


def separator_ids(cfg: CorpusConfig, tokenizer) -> tuple[int, ...]:
    """The sorted token ids that are separators for this corpus config and tokenizer."""
    ids = {bos_id(cfg, tokenizer)}
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            ids.add(int(tid))
    return tuple(sorted(ids))


@lru_cache(maxsize=8)
def _model_separators(model_dir: str, bos_token: str | None) -> tuple[int, ...]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return separator_ids(CorpusConfig(bos_token=bos_token), tok)


def model_separators(cfg: CorpusConfig, model_dir: str) -> tuple[int, ...]:
    """``separator_ids`` for the tokenizer in ``model_dir`` (loaded once per process)."""
    return _model_separators(str(model_dir), cfg.bos_token)


def data_mask(rows: np.ndarray, separators) -> np.ndarray:
    """[rows, ctx_len] bool: True where a position is data (not a separator). Position 0 is always a separator
    position (rows start with BOS), whatever token it holds."""
    mask = ~np.isin(rows, np.asarray(list(separators), dtype=rows.dtype))
    mask[:, 0] = False
    return mask


def sql_list(separators) -> str:
    """The ids as a DuckDB list literal, e.g. ``[0, 2]::INTEGER[]``."""
    return f"[{', '.join(str(int(i)) for i in separators)}]::INTEGER[]"
