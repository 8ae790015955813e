"""Resources injected into assets: the project (config + DuckDB warehouse) and the LLM engines."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ..core import stages
from ..core.config import LLMConfig, ProjectConfig, load_config
from ..core.llm import make_client
from ..core.registry import Registry, load_registry, registry_path


class ProjectResource(dg.ConfigurableResource):
    """The project config file, the explainer registry beside it, and the DuckDB warehouse it names."""

    config_path: str = Field(default="", description="Project YAML; '' = $AUTOINTERP_CONFIG or data/project.yaml")
    explainer: str = Field(default="", description="Explainer name from the registry; '' = its active_explainer "
                           "(the explainer_change sensor pins the name in the runs it requests)")

    def registry(self) -> Registry:
        cfg = load_config(self.config_path or None)
        return load_registry(cfg, registry_path(self.config_path or None))

    def config(self) -> ProjectConfig:
        """The project config with the registry's active (or the pinned) explainer and scorer swapped in."""
        return self.registry().apply(load_config(self.config_path or None), self.explainer or None)

    def context(self, log) -> stages.Context:
        return stages.Context.of(self.config(), log.info)


class LLMResource(dg.ConfigurableResource):
    """Gives LLM clients for the explainer / scorer configs; vLLM engines are started once per process."""

    def client(self, cfg: LLMConfig, workdir) -> object:
        return make_client(cfg, str(workdir))


def default_resources() -> dict:
    return {"project": ProjectResource(), "llm": LLMResource()}
