"""A small project materialized once per test session for the automation tests (sensor, live UI).

Same hookpoints and LLM as the tiny config (so the trained SAEs and the session's vLLM engine are
reused) but one latent range: 2 partitions (layers.1 and layers.3 × 00000-00031). It is materialized
into a persistent Dagster home, so both an in-process sensor test and a `dagster dev` server see
which partitions exist. Each test writes its own copy of the config (same database) in its own
directory, so each has its own explainer registry beside it.
"""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path

import dagster as dg
import yaml

from autointerp_assets_tests.conftest import TMP, write_config

ROOT = TMP / "automation"
KEYS = ["00000-00031|layers.1", "00000-00031|layers.3"]
DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def project_copy(name: str, registry: dict | None = None) -> Path:
    """The base config in its own directory <ROOT>/<name>/project.yaml, with an optional registry beside it."""
    base = base_project()[0]
    d = ROOT / name
    d.mkdir(parents=True, exist_ok=True)
    # its own copy of the base database, so one test's explainers never show up in another's
    cfg = yaml.safe_load(base.read_text())
    shutil.copy(cfg["database"], d / "autointerp.duckdb")
    if Path(cfg["database"] + ".wal").exists():
        shutil.copy(cfg["database"] + ".wal", d / "autointerp.duckdb.wal")
    cfg["database"] = str(d / "autointerp.duckdb")
    (d / "project.yaml").write_text(yaml.safe_dump(cfg))
    if registry is not None:
        write_registry(d / "project.yaml", registry)
    return d / "project.yaml"


def write_registry(config: Path, registry: dict) -> Path:
    path = config.parent / "explainers.yaml"
    path.write_text(yaml.safe_dump(registry))
    return path


@lru_cache(maxsize=None)
def base_project() -> tuple[Path, Path]:
    """(config path, Dagster home) of the base project, materialized end to end once."""
    from autointerp_assets.defs.assets import ALL, PARTITIONED_ASSETS, corpus_tokens, sparse_coders
    from autointerp_assets.defs.resources import LLMResource, ProjectResource

    ROOT.mkdir(parents=True, exist_ok=True)
    config = write_config(ROOT / "project.yaml", {"database": str(ROOT / "autointerp.duckdb"),
                                                   "latents": {"start": 0, "stop": 32, "range_size": 32}})
    home = ROOT / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    resources = {"project": ProjectResource(config_path=str(config)), "llm": LLMResource()}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize(ALL, selection=[corpus_tokens, sparse_coders], instance=instance,
                              resources=resources).success
        # the calibration counts as done with this explainer (these tests are about partitions; test_pipeline and
        # test_calibration run it for real): otherwise the backfill and the explainer sensor would add it
        from autointerp_assets.core.config import load_config
        from autointerp_assets.core.identity import explainer_fp

        instance.report_runless_asset_event(dg.AssetMaterialization(
            dg.AssetKey("calibration"), metadata={"explainer_fp": explainer_fp(load_config(config))}))
        for key in KEYS:
            assert dg.materialize(ALL, selection=PARTITIONED_ASSETS, partition_key=key, instance=instance,
                                  resources=resources).success
    return config, home
