"""The explainer / scorer registry: a YAML file the user edits to declare explainers and scorers by name.

The registry lives beside the project config (``<config dir>/explainers.yaml``, or the path in
$AUTOINTERP_REGISTRY). Each entry lists only the settings that differ from the project config's
``explainer:`` / ``scorer:`` block (nested blocks such as ``llm`` are merged key by key), so
``explainers: {long: {max_tokens: 64}}`` is a complete entry. ``active_explainer`` / ``active_scorer``
pick the entries the explanations and scores assets use. The name ``project`` always means the
project config's own block; without a registry file it is the active one.

Changing the active explainer changes its fingerprint; the Dagster sensor ``explainer_change`` then
re-explains and re-scores every materialized partition. Rows are keyed by ``explainer_fp``, so the
previous explainer's explanations and scores stay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import ConfigError, ExplainerConfig, ProjectConfig, ScorerConfig, config_path, load_config
from .identity import explainer_fp

REGISTRY_ENV = "AUTOINTERP_REGISTRY"
REGISTRY_FILE = "explainers.yaml"
PROJECT = "project"


class RegistryFile(BaseModel):
    """The registry file's shape (unknown keys are errors, so typos fail loudly)."""

    model_config = ConfigDict(extra="forbid")

    active_explainer: str = Field(PROJECT, description="Name of the explainer the pipeline uses.")
    active_scorer: str = Field(PROJECT, description="Name of the scorer settings the pipeline uses.")
    explainers: dict[str, dict | None] = Field(default_factory=dict,
                                               description="name -> explainer settings over the project's")
    scorers: dict[str, dict | None] = Field(default_factory=dict,
                                            description="name -> scorer settings over the project's")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


@dataclass(frozen=True)
class Registry:
    """Named explainers and scorers (validated, merged over the project config) and the active names."""

    path: Path | None
    explainers: dict[str, ExplainerConfig]
    scorers: dict[str, ScorerConfig]
    active_explainer: str = PROJECT
    active_scorer: str = PROJECT

    def explainer(self, name: str | None = None) -> ExplainerConfig:
        name = name or self.active_explainer
        if name not in self.explainers:
            raise ConfigError(f"explainer '{name}' is not in the registry {self.path or '(none)'}: "
                              f"use one of {sorted(self.explainers)}")
        return self.explainers[name]

    def apply(self, cfg: ProjectConfig, explainer: str | None = None) -> ProjectConfig:
        """The project config with the active (or the named) explainer and the active scorer swapped in."""
        return cfg.model_copy(update={"explainer": self.explainer(explainer),
                                      "scorer": self.scorers[self.active_scorer]})


def registry_path(config_file: str | os.PathLike | None = None) -> Path:
    """$AUTOINTERP_REGISTRY, else explainers.yaml beside the project config file."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    return Path(config_file or config_path()).resolve().parent / REGISTRY_FILE


def _validated(model, base: dict, entry: dict | None, where: str):
    try:
        return model.model_validate(_merge(base, entry or {}))
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"{where}.{loc}: {err['msg'].removeprefix('Value error, ')} "
                          f"(fix the entry in the registry file)") from None


def load_registry(cfg: ProjectConfig, path: str | os.PathLike | None) -> Registry:
    """The registry at ``path``; a missing file gives the project config's explainer and scorer as 'project'."""
    p = Path(path) if path is not None else None
    project_e, project_s = cfg.explainer.model_dump(), cfg.scorer.model_dump()
    if p is None or not p.exists():
        return Registry(None, {PROJECT: cfg.explainer}, {PROJECT: cfg.scorer})
    try:
        raw = yaml.safe_load(p.read_text()) or {}
        reg = RegistryFile.model_validate(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"registry {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"registry {p}: {'.'.join(str(x) for x in err['loc'])}: {err['msg']} "
                          f"(allowed keys: active_explainer, active_scorer, explainers, scorers)") from None
    explainers = {PROJECT: cfg.explainer}
    explainers.update({n: _validated(ExplainerConfig, project_e, e, f"{p}: explainers.{n}")
                       for n, e in reg.explainers.items()})
    scorers = {PROJECT: cfg.scorer}
    scorers.update({n: _validated(ScorerConfig, project_s, s, f"{p}: scorers.{n}") for n, s in reg.scorers.items()})
    for kind, name, names in (("explainer", reg.active_explainer, explainers), ("scorer", reg.active_scorer, scorers)):
        if name not in names:
            raise ConfigError(f"registry {p}: active_{kind} '{name}' is not declared: add it under "
                              f"{kind}s: or pick one of {sorted(names)}")
    return Registry(p, explainers, scorers, reg.active_explainer, reg.active_scorer)


def active_config(config_file: str | os.PathLike | None = None, explainer: str | None = None) -> ProjectConfig:
    """The project config with the registry's active explainer and scorer (or the named explainer)."""
    cfg = load_config(config_file)
    return load_registry(cfg, registry_path(config_file)).apply(cfg, explainer)


def explainer_names(config_file: str | os.PathLike | None = None) -> tuple[dict[str, str], str]:
    """({explainer fingerprint: registry name}, the active explainer's fingerprint): names for people."""
    cfg = load_config(config_file)
    reg = load_registry(cfg, registry_path(config_file))
    # the companions explained beside the active one: baselines (no LLM) and output-centric explainers
    names = {explainer_fp(c): (f"baseline {k}" if k in cfg.baseline_explainers else f"output-centric {k}")
             for k, c in cfg.companions()}
    names.update({explainer_fp(reg.apply(cfg, n)): n for n in reg.explainers})
    return names, explainer_fp(reg.apply(cfg))
