"""How the steps of a run execute: in the run's own process (the default: one vLLM engine kept across steps, no
2-core oversubscription), or -- with the config's ``ray:`` section -- each step a Ray job on a cluster
(dagster-ray's executor: resources asked per asset, this checkout's code shipped with each step, a step whose
worker died run again on another node). docs/scale_out.md."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from ..core.config import ConfigError, ProjectConfig
from .partitions import CONFIG

FORWARD = "forward"  # steps that run the subject model or train sparse coders: the GPU steps of a GPU cluster
CLIENT = "client"    # the rest: reads and writes of the warehouse, requests to the LLM server
RAY_TAG = "dagster-ray/config"  # the op tag dagster-ray's executor reads a step's Ray resources from
STEP_ENV = ("AUTOINTERP_CONFIG", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM",
            "VLLM_LOGGING_LEVEL")
CODE_ROOT = Path(__file__).resolve().parents[2]  # the checkout whose code a Ray step runs
NOT_SHIPPED = ["data/", ".venv/", ".git/", "node_modules/", "*.duckdb", "*.duckdb.wal", "__pycache__/"]


def step_tags(kind: str, cfg: ProjectConfig = CONFIG) -> dict[str, str]:
    """The op tags of an asset of ``kind``: the Ray resources its step asks for (none without ``ray:``)."""
    if cfg.ray is None:
        return {}
    gpus = cfg.ray.forward_gpus if kind == FORWARD else 0
    return {RAY_TAG: json.dumps({"num_cpus": cfg.ray.step_cpus, **({"num_gpus": gpus} if gpus else {})})}


def retry_policy(cfg: ProjectConfig = CONFIG) -> dg.RetryPolicy | None:
    """On Ray, a step whose worker died is failed by the executor's health check, then retried by this policy."""
    if cfg.ray is None or cfg.ray.step_retries == 0:
        return None
    return dg.RetryPolicy(max_retries=cfg.ray.step_retries, delay=1)


def runtime_env(cfg: ProjectConfig) -> dict:
    """What each Ray step gets beside the nodes' own environment: this checkout's code (when shipped)."""
    if cfg.ray is None or not cfg.ray.ship_code:
        return {}
    return {"working_dir": str(CODE_ROOT), "excludes": NOT_SHIPPED}


def executor_config(cfg: ProjectConfig) -> dict:
    """dagster-ray's executor config for ``cfg.ray``: the cluster, what each step gets, retries on."""
    return {"ray": {"address": cfg.ray.address, "runtime_env": runtime_env(cfg), "env_vars": [*STEP_ENV, *cfg.ray.env],
                    "inherit_job_submission_client_from_ray_run_launcher": False},
            "retries": {"enabled": {}}}


def executor(cfg: ProjectConfig = CONFIG) -> dg.ExecutorDefinition:
    """The code location's executor: in-process, or dagster-ray's ``ray_executor`` for ``cfg.ray``."""
    if cfg.ray is None:
        return dg.in_process_executor
    try:
        from dagster_ray import ray_executor
    except ImportError:
        raise ConfigError("ray: is set in the config but Ray is not installed: run `make ray` (pip install -r "
                          "requirements/ray.lock), or remove the ray section to run steps in one process") from None
    return ray_executor.configured(executor_config(cfg), name="ray")
