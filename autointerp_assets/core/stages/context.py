"""What every stage needs: the config, its warehouse, the workdir, a logger (identities: :mod:`..identity`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import identity
from ..config import ProjectConfig
from ..storage import Warehouse
from ..subject_model import resolve_model

log = logging.getLogger(__name__)
Log = Callable[[str], None]


@dataclass
class Context:
    """What every stage needs: the config, its warehouse, the workdir, a logger."""

    cfg: ProjectConfig
    wh: Warehouse
    log: Log = log.info

    @property
    def workdir(self) -> Path:
        return self.cfg.resolve(self.cfg.workdir)

    @classmethod
    def of(cls, cfg: ProjectConfig, log_fn: Log | None = None) -> "Context":
        return cls(cfg, Warehouse.of(cfg), log_fn or log.info)

    def model_dir(self) -> str:
        return resolve_model(self.cfg.subject_model, self.workdir)

    def corpus_fp(self) -> str:
        return identity.corpus_fp(self.cfg, self.workdir)


def rate(n: int, secs: float) -> float:
    return round(n / secs, 3) if secs > 0 else 0.0
