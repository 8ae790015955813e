"""Shared set-up of the fault tests: a synthetic project (no subject model, SAE or caching) whose LLM stages talk to
the fault-injecting local server (:mod:`.fake_openai`), run through the real CLI and Dagster.

One partition (``layers.1``, latents 00000-00031) is explained and scored by a *good* run while it has latents
0-1; then latents 2-4 join it (as when ``max_per_range`` is raised): that state, with 3 of 5 latents' work
missing, is where every fault run starts.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from autointerp_assets.core.storage import TABLES, Warehouse
from autointerp_assets_tests.conftest import write_config
from autointerp_assets_tests.support.synthetic import write_partition

LAYER, RANGE = "layers.1", "00000-00031"
BEFORE, AFTER = [0, 1], [0, 1, 2, 3, 4]
KEY_ENV = "AUTOINTERP_MATRIX_KEY"
# tables whose rows a run may add to (never change or remove): results, failures beside them, the ledger
GROWING = ("explanations", "scores", "score_items", "llm_calls", "fingerprints")
HISTORY = ("attempts", "failed_attempts", "last_error", "last_failed_at")


def fast_dir(prefix: str) -> Path:
    """A scratch dir in memory when the machine has room there (Dagster's SQLite and DuckDB fsync a lot)."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and shutil.disk_usage(shm).free > 512 << 20:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=shm))
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix=prefix))


def llm(url: str, **over) -> dict:
    return {"engine": "openai", "model": "smollm2", "base_url": url, "max_concurrency": 8, "timeout_s": 0.3,
            "max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.02, "api_key_env": KEY_ENV, **over}


def project(root: Path, name: str, url: str, **over) -> Path:
    """A config for one database: the detection scorer and its random-explanation control, no other extra, no
    baseline explainer (the faults are the LLM's: every explanation row is the LLM explainer's)."""
    cfg = {"database": str(root / f"{name}.duckdb"), "explainer": {"llm": llm(url), "max_tokens": 32},
           "baseline_explainers": [],
           "scorer": {"scorers": ["detection"], "examples_per_prompt": 4},
           "scoring": {"scorers": [], "control_scorers": ["detection"], "bootstrap_samples": 100}}
    return write_config(root / f"{name}.yaml", _deep(cfg, over))


def _deep(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def seed(path: Path, latents) -> Warehouse:
    wh = Warehouse(path)
    write_partition(wh, LAYER, list(latents))
    return wh


def copy_db(src: Path, dest: Path) -> Path:
    Warehouse(src).snapshot(dest)
    return dest


def tables(wh: Warehouse) -> dict[str, Counter]:
    """Every table: its columns, and every row (all columns, as text) with its multiplicity."""
    out = {}
    with wh.read() as con:
        for t in TABLES:
            cur = con.execute(f"SELECT * FROM {t}")
            out[t] = Counter(repr(r) for r in cur.fetchall())
            out[t + ":columns"] = Counter(d[0] for d in cur.description)
    return out


def results(wh: Warehouse) -> dict[str, list[tuple]]:
    """What a run produced, without the columns that name when or in which run (to compare two databases)."""
    q = {"explanations": "SELECT layer, latent, explainer_fp, status, explanation, raw_text FROM explanations",
         "scores": "SELECT layer, latent, explainer_fp, scorer, status, n, n_failed, balanced_accuracy, auroc, "
                   "n_batches, n_failed_batches, value, ci_low, ci_high FROM scores",
         "score_items": "SELECT * FROM score_items",
         "calls": "SELECT stage, latent, scorer, batch_index, status, attempts, prompt_tokens, completion_tokens "
                  "FROM llm_calls"}
    return {k: sorted(wh.query(v).rows(), key=repr) for k, v in q.items()}


def bodies(srv, start: int = 0) -> Counter:
    """The chat requests the server received since ``start``, as a multiset of their JSON."""
    return Counter(json.dumps(b, sort_keys=True) for b in srv.bodies[start:])


def run_cli(*args: str) -> int:
    from autointerp_assets import cli

    return cli.main(["run", "--from", "explanations", "--layer", LAYER, "--latents", RANGE, *args])


def set_env(monkeypatch, config: Path, dagster_home: Path) -> None:
    """The CLI's environment: this config, a Dagster home of the test's own (telemetry off), no key."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("AUTOINTERP_CONFIG", str(config))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.delenv(KEY_ENV, raising=False)


