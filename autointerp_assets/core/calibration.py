"""Known-answer calibration: planted latents whose meaning is known, built from the corpus itself.

Before a costly run a user wants to know how much their explainer + scorer setup can see at all. A planted
latent is an indicator of a token set of the corpus -- a word and its forms, digits, closing brackets, a
Python keyword, capitalised words, quotation marks, underscores, commas -- firing (a seeded value in
[0.6, 1]) on every data position holding one of its tokens and nowhere else (never on a separator). Its gold
explanation says exactly that. The calibration samples them with the real sampler and scores them with the
configured scorers three ways: (a) the gold explanation, (b) a deranged gold one (another planted latent's:
the control) and (c) the configured explainer's own explanation. Then:

- **power** of a scorer = how well it separates gold from control: the median paired difference gold -
  control with its interval and the share of planted latents where gold wins. A scorer that cannot tell a
  true description from a wrong one on latents this clean will not tell them apart on real ones;
- **recovery** of an explainer = how often its explanation of a planted latent is nearest (sentence
  embedding) to that latent's own gold among all golds.

``pattern`` is what the gold explanation says, as a regular expression over text: a literal reader of the
explanation (the known-answer test's engine double) applies it.

Pure code: vocabulary strings and token counts in, planted sets and activations out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

PLANTED_VERSION = "planted-v1"
KEYWORDS = ("import", "def", "class", "return", "lambda", "yield", "raise")


@dataclass(frozen=True)
class Planted:
    name: str
    gold: str
    token_ids: tuple[int, ...]
    pattern: str  # the gold explanation read literally: a regex matching a token of the set in text


def _names(vocab: Sequence[str]) -> list[str]:
    return [t.strip() for t in vocab]


def _ids(names: list[str], keep: Callable[[str], bool]) -> tuple[int, ...]:
    return tuple(i for i, n in enumerate(names) if n and keep(n))


def _frequent_words(names: list[str], counts: np.ndarray, exclude: set[str], n: int) -> list[str]:
    """The n most frequent lower-case alphabetic tokens of 5+ letters (their stripped text), most frequent first."""
    total: dict[str, int] = {}
    for i, w in enumerate(names):
        if len(w) >= 5 and w.isalpha() and w.islower() and w not in exclude and i < len(counts):
            total[w] = total.get(w, 0) + int(counts[i])
    return [w for w, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def plant(vocab: Sequence[str], counts: np.ndarray, max_latents: int = 10) -> list[Planted]:
    """The planted latents for this vocabulary, in a fixed order; ``counts[token_id]`` = its corpus frequency
    (families whose tokens never occur are skipped; the sampler later drops those too rare to be explained)."""
    names = _names(vocab)
    counts = np.asarray(counts)
    keyword = next((k for k in KEYWORDS if sum(int(counts[i]) for i in _ids(names, lambda n, k=k: n == k)) > 0), None)
    words = _frequent_words(names, counts, set(KEYWORDS), 2)

    def word_family(w: str) -> Planted:
        ids = _ids(names, lambda n: n.lower().startswith(w) and len(n) <= len(w) + 3 and n.isalpha())
        forms = sorted({names[i] for i in ids if counts[i] > 0} - {w}, key=lambda f: -sum(
            int(counts[i]) for i in ids if names[i] == f))[:3]
        also = f" and its forms ({', '.join(repr(f) for f in forms)})" if forms else ""
        return Planted(f"word_{w}", f'The word "{w}"{also}.', ids, rf"(?i)(?<![a-z]){re.escape(w)}[a-z]{{0,3}}(?![a-z])")

    families = [
        Planted("closing_brackets", "Closing brackets: ')', ']' and '}'.",
                _ids(names, lambda n: set(n) <= set(")]}")), r"[)\]}]"),
        Planted("digits", "Digits: numbers written with the characters 0-9.", _ids(names, str.isdigit), r"\d"),
        *([Planted(f"keyword_{keyword}", f'The Python keyword "{keyword}".', _ids(names, lambda n: n == keyword),
                   rf"(?<![A-Za-z0-9_]){keyword}(?![A-Za-z0-9_])")] if keyword else []),
        *([word_family(words[0])] if words else []),
        Planted("capitalised", "Capitalised words: a word starting with an upper-case letter followed by lower-case "
                "letters, as in names and at the start of sentences.",
                _ids(names, lambda n: len(n) >= 2 and n.isalpha() and n[0].isupper() and n[1:].islower()),
                r"(?<![A-Za-z])[A-Z][a-z]+"),
        Planted("quotes", "Quotation marks and backticks: ', \" and `.", _ids(names, lambda n: set(n) <= set("'\"`")),
                r"['\"`]"),
        Planted("underscores", "Underscores, as in snake_case names and __dunder__ methods.",
                _ids(names, lambda n: set(n) <= set("_")), r"_"),
        Planted("commas", "Commas.", _ids(names, lambda n: n == ","), r","),
        *([word_family(words[1])] if len(words) > 1 else []),
        Planted("colons", "Colons ':'.", _ids(names, lambda n: n == ":"), r":"),
    ]
    out = [p for p in families if p.token_ids and sum(int(counts[i]) for i in p.token_ids if i < len(counts)) > 0]
    return out[:max_latents]


def planted_activations(rows: np.ndarray, data: np.ndarray, planted: Sequence[Planted], seed: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(latent, row, pos, value) of every planted firing, sorted by (latent, row, pos): latent i fires on every
    data position (``data``: [rows, ctx_len] bool, separators False) holding one of its tokens, with a seeded
    value in [0.6, 1] (graded, so quantile bins mean something; all above 0.3 x max, so all highlighted)."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, p in enumerate(planted):
        r, c = np.nonzero(np.isin(rows, np.asarray(p.token_ids, dtype=rows.dtype)) & data)
        parts.append((np.full(len(r), i, dtype=np.int32), r.astype(np.int32), c.astype(np.int32),
                      rng.uniform(0.6, 1.0, len(r)).astype(np.float32)))
    if not parts:
        return tuple(np.zeros(0, dtype=t) for t in (np.int32, np.int32, np.int32, np.float32))
    return tuple(np.concatenate(c) for c in zip(*parts))


def literal_reader(gold: str, planted: Sequence[Planted]) -> re.Pattern | None:
    """The regex a literal reader applies for an explanation: the pattern of the planted latent whose gold it is."""
    for p in planted:
        if p.gold == gold:
            return re.compile(p.pattern)
    return None
