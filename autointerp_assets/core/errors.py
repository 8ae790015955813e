"""Errors users read: one line that names what is at fault (file, row, partition, server) and the fix.

- :class:`InputError` — bad input found before heavy work (a file, a model, a corpus line).
- :class:`StageFailed` — a stage of one partition failed after recording what it could (its results and
  failures are committed first); ``summary`` holds what it did, for Dagster metadata.
- :func:`one_line` — any exception as one line; the traceback stays in the Dagster log.
- :func:`storage_cause` — what really made a DuckDB write fail (disk full, a file limit), as the message.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class InputError(ValueError):
    """Bad input (a file, a model, a server) stated in one line with the fix."""


class StorageError(RuntimeError):
    """The warehouse file cannot be written or read (disk full, damaged, missing), in one line with the fix."""


class StageFailed(RuntimeError):
    """A partition's stage failed; the message is one line; ``summary``: what the stage did before failing."""

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary or {}


def one_line(e: BaseException, limit: int = 500) -> str:
    """The exception as one line: our own errors as their message, others as ``Type: first line``."""
    from .config import ConfigError

    text = " ".join(str(e).strip().splitlines()[0].split()) if str(e).strip() else ""
    ours = isinstance(e, (InputError, StageFailed, StorageError, ConfigError)) or type(e).__name__ in (
        "BudgetExceeded", "LLMServerError", "CorpusError", "ModelError", "SparseCoderError")
    line = text if ours and text else f"{type(e).__name__}: {text or repr(e)}"
    return line if len(line) <= limit else line[: limit - 3] + "..."


_FULL = ("no space left on device", "disk full", "file too large", "could not write", "could not extend",
         "failed to write", "enospc", "efbig")


def storage_cause(e: BaseException, path: Path) -> str | None:
    """One line naming the real cause when a write to the warehouse at ``path`` failed because the disk (or a
    file-size limit) is full; None for other errors."""
    text = str(e).lower()
    code = getattr(e, "errno", None)
    if not (code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or any(k in text for k in _FULL)):
        return None
    where = path.parent if path.parent.exists() else Path(".")
    try:
        free = f"{shutil.disk_usage(where).free / 2**20:.0f} MiB free on {where}"
    except OSError:
        free = f"free space on {where} unknown"
    first = " ".join(str(e).splitlines()[0].split())[:160]
    return (f"writing the warehouse {path} failed: the disk or a file-size limit is full ({first}; {free}): free "
            f"space (or move `database:` to a larger disk) and re-run; the failed transaction was rolled back")


def readable_database_hint(e: BaseException, path: Path) -> str:
    """One line for a warehouse file that DuckDB cannot open (truncated, not a database, wrong version)."""
    first = " ".join(str(e).splitlines()[0].split())[:200]
    size = f"{os.path.getsize(path):,} bytes" if path.exists() else "missing"
    return (f"the warehouse {path} ({size}) is damaged or not a DuckDB file ({first}): restore a copy (e.g. one made "
            f"by autointerp snapshot) or move it away and let `autointerp run` rebuild it")
