"""A caching run SIGKILLed mid-way resumes on re-run and ends with exactly the rows of an uninterrupted run.

Real SmolLM2, real DuckDB, the pipeline functions in subprocesses (one SAE hookpoint reading a layer's
output, one transcoder reading a layer's input).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autointerp_assets.core import stages
from autointerp_assets.core.config import load_config
from autointerp_assets.core.storage import Warehouse
from autointerp_assets_tests.conftest import write_config

pytestmark = pytest.mark.slow

CHILD = """
import sys, time
from autointerp_assets.core import stages
from autointerp_assets.core.config import load_config
ctx = stages.Context.of(load_config(sys.argv[1]), lambda m: print(m, flush=True))
def on_commit(a, b):
    print(f"committed {b}", flush=True)
    time.sleep(float(sys.argv[2]))  # slow the child down so the parent's kill lands mid-way
stages.ensure_cache(ctx, on_commit=on_commit)
print("finished", flush=True)
"""


def run_child(cfg: Path, pause: float = 0.0, kill_after: int | None = None) -> list[str]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(cfg), str(pause)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines, commits = [], 0
    for line in proc.stdout:
        lines.append(line.strip())
        commits += line.startswith("committed")
        if kill_after is not None and commits >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=300)
    if kill_after is None:
        assert proc.returncode == 0, lines[-5:]
    else:
        assert proc.returncode == -signal.SIGKILL
    return lines


def cache_rows(db: Path) -> list[tuple]:
    return Warehouse(db).query("SELECT layer, latent, token, value_bits FROM activation_cache ORDER BY ALL").rows()


@pytest.mark.parametrize("commit_every_s", [0.0, 0.05])  # every batch its own commit; groups of a few batches
def test_sigkill_mid_cache_then_rerun_gives_exactly_the_uninterrupted_rows(tmp_path, commit_every_s):
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(0)
    for name, transcode in (("layers.1", False), ("layers.3", True)):
        sae = SparseCoder(576, SparseCoderConfig(num_latents=256, k=8, transcode=transcode))
        with torch.no_grad():
            sae.encoder.bias.normal_()
        sae.save_to_disk(tmp_path / "saes" / name)
    over = {"hookpoints": ["layers.1", "layers.3"], "sae": {"source": str(tmp_path / "saes")},
            "corpus": {"n_tokens": 4160, "ctx_len": 65}, "latents": {"start": 0, "stop": 128, "range_size": 64},
            "caching": {"batch_rows": 4, "threads": 1, "read_rows": 12, "commit_every_s": commit_every_s}}
    killed = write_config(tmp_path / "killed.yaml", {**over, "database": str(tmp_path / "killed.duckdb")})
    clean = write_config(tmp_path / "clean.yaml", {**over, "database": str(tmp_path / "clean.duckdb")})
    ctx = stages.Context.of(load_config(killed))
    stages.run_corpus(ctx)
    infos = stages.run_sparse_coders(ctx)
    assert [i["hook_input"] for i in infos] == [False, True]
    shutil.copy(tmp_path / "killed.duckdb", tmp_path / "clean.duckdb")  # same corpus rows and coders

    run_child(killed, pause=0.4, kill_after=4)
    wh = Warehouse(tmp_path / "killed.duckdb")
    n_rows = wh.scalar("SELECT count(*) FROM tokens")
    stopped = wh.scalar("SELECT max(row_stop) FROM cache_progress")
    assert 4 * 4 <= stopped < n_rows and wh.scalar("SELECT count(*) FROM cache_complete") == 0
    survived = wh.scalar("SELECT count(*) FROM activation_cache")
    assert survived > 0  # committed batches survived the kill
    assert wh.scalar("SELECT sum(n_nonzero) FROM cache_progress") == survived  # exactly the committed batches' rows

    resumed = run_child(killed)
    assert any("resuming activation cache" in ln and f"at row {stopped}/" in ln for ln in resumed)
    first_commit = next(ln for ln in resumed if ln.startswith("committed"))
    assert first_commit == f"committed {stopped + 4}"  # no committed batch was recomputed
    run_child(clean)

    got, want = cache_rows(tmp_path / "killed.duckdb"), cache_rows(tmp_path / "clean.duckdb")
    assert len(want) > 1000 and got == want  # the same multiset of rows, nothing lost or duplicated
    assert {r[0] for r in want} == {"layers.1", "layers.3"}
    batches = wh.query("SELECT batch_index, count(*) AS n FROM cache_progress GROUP BY ALL ORDER BY ALL")
    assert batches["batch_index"].to_list() == list(range(n_rows // 4)) and set(batches["n"]) == {1}


def test_concurrent_callers_share_one_forward_pass(tmp_path):
    """Two threads that both find the cache unfinished: one computes it, the other waits and reuses it."""
    import threading

    from autointerp_assets.core import stages
    from autointerp_assets.core.config import load_config
    from autointerp_assets_tests.conftest import write_config

    cfg = load_config(write_config(tmp_path / "p.yaml", {"database": str(tmp_path / "w.duckdb"),
                                                         "corpus": {"n_tokens": 4128, "ctx_len": 129}}))
    ctx = stages.Context.of(cfg)
    stages.run_corpus(ctx)
    stages.run_sparse_coders(ctx)
    results = []
    threads = [threading.Thread(target=lambda: results.append(stages.ensure_cache(stages.Context.of(cfg))[1]))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["reused"] for r in results) == [False, True]
    assert ctx.wh.scalar("SELECT count(*) FROM cache_progress") == 4128 // 129 // cfg.caching.batch_rows


def test_commit_groups_store_the_same_rows_and_a_mark_per_batch(tmp_path):
    """Batches gathered into one transaction (commit_every_s) give the rows and progress marks of batch-by-batch
    commits; the group is sorted as one (rowid order = (layer, latent, token) across its batches)."""
    modes = {"per_batch": 0.0, "grouped": 1e9}  # commit_every_s: every batch alone; all batches in one group
    paths = {m: write_config(tmp_path / f"{m}.yaml", {"database": str(tmp_path / f"{m}.duckdb"),
                                                      "corpus": {"n_tokens": 4128, "ctx_len": 129},
                                                      "caching": {"batch_rows": 4, "commit_every_s": s}})
             for m, s in modes.items()}
    ctx = stages.Context.of(load_config(paths["per_batch"]))
    stages.run_corpus(ctx)
    stages.run_sparse_coders(ctx)
    shutil.copy(tmp_path / "per_batch.duckdb", tmp_path / "grouped.duckdb")
    got = {}
    for m, path in paths.items():
        c = stages.Context.of(load_config(path))
        seen = []
        stages.ensure_cache(c, on_commit=lambda a, b: seen.append((a, b)))
        assert seen == [(a, a + 4) for a in range(0, 32, 4)]  # every batch reported once, in order
        got[m] = (c.wh.query("SELECT layer, latent, token, value_bits FROM activation_cache ORDER BY rowid"),
                  c.wh.query("SELECT batch_index, row_start, row_stop, n_nonzero FROM cache_progress ORDER BY ALL"))
    (per_batch, marks), (grouped, gmarks) = got["per_batch"], got["grouped"]
    assert gmarks.equals(marks) and len(marks) == 8 and marks["n_nonzero"].sum() == len(per_batch) > 1000
    key = ["layer", "latent", "token"]
    assert grouped.equals(per_batch.sort(key))  # one group: the same rows, sorted as one
    assert not per_batch.equals(per_batch.sort(key))  # batch by batch: each batch sorted on its own
