"""Baseline explainers that need no LLM: what a free explanation scores, for an LLM explanation to beat.

They are explainer kinds like any other (``explainer.kind``, registry entries), with their own fingerprint
(no LLM in it), so their explanations and scores sit beside the LLM explainers' rows and the leaderboard /
``explainer_pairs`` compare them on the same latents with the same scorers.

- ``top_tokens``: the tokens carrying most of the latent's activation mass in its train examples (the ones
  the LLM explainer is shown), in order of mass until ``baseline_mass`` of it is covered, at most
  ``n_baseline_tokens``; variants differing only by surrounding whitespace count as one token.
  'The tokens "import", "from" and "as".' -- for the many lexical latents of an SAE this is hard to beat.
- ``logit_lens``: the tokens the latent's decoder direction promotes through the subject model's
  unembedding (``W_dec[latent] * norm_gain @ W_U^T``, as the ``logit`` explainer lists them):
  'Text where the next token is likely "(", "[" or "{".'

Pure code: examples and token strings in, one sentence out.
"""

from __future__ import annotations

from typing import Sequence

from .records import Example

KINDS = ("top_tokens", "logit_lens")
BASELINE_VERSION = {"top_tokens": "top-tokens-v1", "logit_lens": "logit-lens-v1"}
_NAMED = {"\n": "newline", "\t": "tab", " ": "space", "\r": "carriage return"}


def is_baseline(kind: str) -> bool:
    return kind in KINDS


def token_name(tok: str) -> str:
    """A token as a reader names it: surrounding whitespace dropped; a whitespace-only token by its name."""
    core = tok.strip()
    if core:
        return core
    return " + ".join(_NAMED.get(c, repr(c)) for c in dict.fromkeys(tok)) or "empty"


def _quoted(names: Sequence[str], conjunction: str = "and") -> str:
    q = [f'"{n}"' for n in names]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + f" {conjunction} " + q[-1]


def top_tokens(train: Sequence[Example], n: int = 5, mass: float = 0.8) -> list[tuple[str, float]]:
    """(token name, share of the activation mass) in order of mass, until ``mass`` is covered, at most ``n``."""
    totals: dict[str, float] = {}
    for ex in train:
        for tok, a in zip(ex.str_tokens, ex.activations):
            if a > 0:
                name = token_name(tok)
                totals[name] = totals.get(name, 0.0) + float(a)
    whole = sum(totals.values())
    if whole <= 0:
        return []
    out, covered = [], 0.0
    for name, m in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])):
        out.append((name, m / whole))
        covered += m / whole
        if len(out) >= n or covered >= mass:
            break
    return out


def top_tokens_explanation(train: Sequence[Example], n: int = 5, mass: float = 0.8) -> str | None:
    names = [name for name, _ in top_tokens(train, n, mass)]
    if not names:
        return None
    return f"The token {_quoted(names)}." if len(names) == 1 else f"The tokens {_quoted(names)}."


def logit_lens_explanation(promoted: Sequence[str], n: int = 5) -> str | None:
    names = list(dict.fromkeys(token_name(t) for t in promoted))[:n]
    if not names:
        return None
    return f"Text where the next token is likely {_quoted(names, 'or')}."
