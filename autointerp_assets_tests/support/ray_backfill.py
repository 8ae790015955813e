"""The tiny project on a Ray cluster into a DuckLake, driven as a user of a deployment drives it: the Dagster
instance on PostgreSQL (deploy/dagster.yaml), the daemon starting queued runs, ``dagster job execute`` for the
unpartitioned jobs and ``dagster job backfill`` for the partitions (test_ray_backfill.py, benchmarks/scale_out.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

from autointerp_assets.core.config import load_config
from autointerp_assets.core.storage.lake import Lake

from .postgres import create_database
from .projects import ROOT
from .same_rows import tiny_project

BACKFILL_TIMEOUT_S = 1800


def shared_llm(llm_url: str) -> dict:
    """The tiny project's sections for a cluster: the explainer (and scorer) asking the shared server at
    ``llm_url``; the LLM explainer only, scored by detection and fuzzing (and the embedding scorer), no baselines
    or controls -- the LLM work of a 2-core machine's CPU server kept to what the run needs to show."""
    return {"explainer": {"llm": {"engine": "openai", "model": "smollm2", "base_url": llm_url, "max_concurrency": 32,
                                  "api_key_env": "AUTOINTERP_TEST_UNSET_KEY"}, "max_tokens": 32},
            "baseline_explainers": [], "scoring": {"scorers": ["embedding"], "control_scorers": [],
                                                   "bootstrap_samples": 200}}


def cluster_project(out: Path, pg: dict, llm_url: str, name: str) -> tuple[dict, Lake]:
    """The tiny project in ``out`` writing to a new lake (databases ``<name>_lake`` and ``<name>_dagster`` on
    ``pg``), its Dagster home the deployment's; returns the environment of its hosts and the lake."""
    lake = Lake(create_database(pg, f"{name}_lake"), str(out / "lake") + "/")
    create_database(pg, f"{name}_dagster")
    env = tiny_project(ROOT, out, extra={**shared_llm(llm_url), "lake": {"catalog": lake.catalog,
                                                                          "data_path": lake.data_path}})
    shutil.copy(ROOT / "deploy" / "dagster.yaml", Path(env["DAGSTER_HOME"]) / "dagster.yaml")
    env["DAGSTER_PG_URL"] = f"postgresql+psycopg2://{pg['user']}@{pg['host']}:{pg['port']}/{name}_dagster"
    return env, lake


def use_cluster(env: dict, dashboard: str, step_cpus: int, step_retries: int = 2) -> None:
    """Add the cluster (its dashboard address) to the project's config: ``ray:``."""
    path = Path(env["AUTOINTERP_CONFIG"])
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "ray": {"address": dashboard, "step_cpus": step_cpus,
                                                   "step_retries": step_retries}}))


def dagster(args: list[str], env: dict, timeout: float = 1200) -> str:
    """The dagster CLI: ``job execute`` runs here (its steps on Ray); ``job backfill`` queues runs for the daemon
    (the code location of workspace.yaml, as the daemon loads it)."""
    where = ["-w", "workspace.yaml"] if args[:2] == ["job", "backfill"] else ["-m", "autointerp_assets.definitions"]
    r = subprocess.run([sys.executable, "-m", "dagster", *args, *where], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"dagster {' '.join(args)} failed ({r.returncode}): {r.stdout[-3000:]} {r.stderr[-3000:]}")
    return r.stdout + r.stderr


@contextmanager
def daemon(env: dict, log: Path) -> Iterator[subprocess.Popen]:
    """``dagster-daemon run`` (it starts the queued runs), stopped with its process group after. The instance's
    tables are created first (`dagster instance migrate`): a daemon and a CLI creating them at once on a new
    PostgreSQL database race (seen: the daemon died on "type alembic_version already exists")."""
    subprocess.run([sys.executable, "-m", "dagster", "instance", "migrate"], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    with open(log, "w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def upstream(env: dict) -> None:
    """The unpartitioned start, as ``autointerp run`` does it: corpus and sparse coders, then the calibration."""
    dagster(["job", "execute", "-j", "corpus_and_sparse_coders"], env)
    dagster(["job", "execute", "-j", "calibrate"], env)


def launch_backfill(env: dict) -> tuple[str, list[str]]:
    """One backfill of every partition of the project; (its id, the partition keys)."""
    cfg = load_config(env["AUTOINTERP_CONFIG"])
    keys = [f"{latents}|{layer}" for layer in cfg.layer_keys() for latents in cfg.latent_keys()]
    out = dagster(["job", "backfill", "-j", "latent_range_pipeline", "--partitions", ",".join(keys), "--noprompt"], env)
    return out.split("Launched backfill job `")[1].split("`")[0], keys


def wait_for_backfill(instance, backfill_id: str, n_runs: int, timeout_s: float = BACKFILL_TIMEOUT_S) -> list:
    """The backfill's runs once all ``n_runs`` have finished."""
    import dagster as dg

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        if len(runs) == n_runs and all(r.is_finished for r in runs):
            return runs
        time.sleep(1)
    raise TimeoutError(f"backfill {backfill_id} not finished in {timeout_s:.0f}s")
