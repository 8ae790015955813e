"""What every benchmark prints beside its numbers: the machine's load before and after a measurement, and whether
it was quiet enough for a headline (a busy machine gives numbers, never a headline)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = 0.5  # 1-minute load average per core above which a run is "busy"


def load() -> float:
    return os.getloadavg()[0]


def commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def describe() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, commit {commit()}"


def verdict(before: float, after: float) -> tuple[bool, str]:
    """(quiet, line): the load average before/after and whether a headline may be printed."""
    cores = os.cpu_count() or 1
    busy = max(before, after) / cores > QUIET
    line = f"load average {before:.2f} -> {after:.2f} on {cores} cores"
    return (not busy, f"{line}: {'BUSY, no headline (numbers only)' if busy else 'quiet'}")
