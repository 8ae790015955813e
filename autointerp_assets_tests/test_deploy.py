"""The deployment files in deploy/ are what their tools accept: the `ray up` cluster by Ray's own schema, the
cluster's project config by ours, the instance by Dagster's, and the services start programs the environment has."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import yaml

from autointerp_assets.core.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
VENV_ON_HOSTS = "/opt/autointerp/.venv/"  # where deploy/ray/cluster.yaml puts `make setup ray`


def test_the_ray_up_cluster_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((DEPLOY / "ray" / "cluster.yaml").read_text())
    validate_config(prepare_config(raw))  # raises on a field Ray does not know or a missing one
    assert raw["provider"]["type"] == "local" and raw["head_start_ray_commands"]
    starts = " ".join(raw["head_start_ray_commands"] + raw["worker_start_ray_commands"])
    assert "secrets.env" in starts and "--dashboard-port=8265" in starts  # secrets on the nodes, not in jobs
    assert starts.count("export PATH=/opt/autointerp/.venv/bin:$PATH") == 2  # a step runs a bare `dagster`
    assert "make setup ray" in " ".join(raw["setup_commands"])


def test_the_cluster_project_is_a_valid_config_on_a_lake_and_ray_with_no_secret():
    raw = yaml.safe_load((DEPLOY / "project.yaml").read_text())
    cfg = parse_config(raw)
    assert cfg.lake is not None and cfg.ray is not None and cfg.ray.forward_gpus == 1
    assert cfg.explainer.llm.engine == "openai" and cfg.ray.address.endswith(":8265")
    text = (DEPLOY / "project.yaml").read_text().lower()
    assert "password=" not in text and "api_key:" not in text


def test_the_instance_is_postgres_from_the_environment_and_runs_several_at_once():
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert raw["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    assert raw["concurrency"]["runs"]["max_concurrent_runs"] >= 4


def test_the_services_start_programs_of_the_projects_environment():
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read_string(unit.read_text().replace("\\\n", " "))
        exe = shlex.split(parser["Service"]["ExecStart"])[0]
        assert exe.startswith(VENV_ON_HOSTS), (unit.name, exe)
        assert (ROOT / ".venv" / exe[len(VENV_ON_HOSTS):]).exists(), (unit.name, exe)  # the same venv, here
        assert parser["Service"]["EnvironmentFile"] == "/etc/autointerp/secrets.env"
    web = (DEPLOY / "systemd" / "dagster-webserver.service").read_text()
    assert "-h 127.0.0.1" in web  # the UI is not on the network
