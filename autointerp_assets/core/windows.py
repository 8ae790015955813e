"""The unit of sampling: a fixed window of a corpus row, defined once for statistics and sampling.

A corpus row is ``ctx_len`` tokens, position 0 its BOS. It is tiled by ``windows_per_row`` non-overlapping
*fixed windows* of ``example_ctx_len`` tokens starting at position 1: window ``(pos - 1) // w``. The config
refuses a ``ctx_len`` / ``example_ctx_len`` pair that leaves a tail (``tiling_error``), so every data position
of a row lies in exactly one window and every activation can be sampled. Separator positions inside a
window are not data (``separators``): nothing fires there, but the window still counts as one unit.

A latent's activating units are the windows where it fires at least once. ``latent_stats`` (SQL) and
``latent_selection`` (numpy, ``sampling.rules``) both count them with the rule here, and both say
``dead`` (fires nowhere), ``too_rare`` (fewer than ``min_examples`` units) or eligible.
"""

from __future__ import annotations

import numpy as np

DEAD, TOO_RARE, ALIVE = "dead", "too_rare", "alive"


def windows_per_row(ctx_len: int, example_ctx_len: int) -> int:
    return (ctx_len - 1) // example_ctx_len


def tiling_error(ctx_len: int, example_ctx_len: int) -> str | None:
    """One line naming the fix when windows of ``example_ctx_len`` do not tile positions 1..ctx_len-1; else None."""
    w, body = example_ctx_len, ctx_len - 1
    if w > body:
        return f"sampler.example_ctx_len ({w}) must be <= corpus.ctx_len - 1 ({body})"
    tail = body % w
    if tail == 0:
        return None
    n = body // w
    return (f"corpus.ctx_len ({ctx_len}) leaves positions {n * w + 1}-{ctx_len - 1} outside every "
            f"{w}-token window, so activations there could never be sampled: set corpus.ctx_len to "
            f"{n * w + 1} or {(n + 1) * w + 1} (BOS + a multiple of sampler.example_ctx_len)")


def unit_sql(pos: str, example_ctx_len: int) -> str:
    """SQL: the window index of position expression ``pos`` (position 0, BOS, gives -1)."""
    return f"(({pos}) - 1) // {int(example_ctx_len)}"


def status_sql(n_windows: str, min_examples: int) -> str:
    """SQL: dead / too_rare / alive from a count of activating units (NULL or 0 = dead)."""
    return (f"CASE WHEN coalesce({n_windows}, 0) = 0 THEN '{DEAD}' WHEN {n_windows} < {int(min_examples)} "
            f"THEN '{TOO_RARE}' ELSE '{ALIVE}' END")


def status_of(n_windows: np.ndarray, min_examples: int) -> np.ndarray:
    """numpy: the same rule as ``status_sql``."""
    n = np.asarray(n_windows)
    return np.where(n == 0, DEAD, np.where(n < min_examples, TOO_RARE, ALIVE)).astype(object)
