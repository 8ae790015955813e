"""The tiny project on a Ray cluster: its 4 partitions as one Dagster backfill (the daemon starting the runs, each
step a Ray job of dagster-ray's executor) into a DuckLake, beside the same project run in one process into a DuckDB
file. Every component is real and started here: PostgreSQL (the lake's catalog and the Dagster instance), a vLLM
OpenAI server both runs ask (float32, no prefix cache: answers that do not depend on what was asked before), a Ray
head and a second Ray node (separate processes), the Dagster daemon.

Shown: every row of every table equal to the one-process run; an analyst querying the lake every second saw each
partition of the stages that write a partition whole either absent or whole, and kept a read transaction open while
writers committed; the second node killed (SIGKILL of it and every process it ran) in the middle of a step, the
step retried on the head and the backfill complete, no row lost or doubled (the equality)."""

from __future__ import annotations

import threading
import time

import duckdb
import pytest

from autointerp_assets.core.storage import TABLES
from autointerp_assets.core.storage.lake import Lake
from autointerp_assets_tests.support.llm_server import vllm_server
from autointerp_assets_tests.support.postgres import postgres_server
from autointerp_assets_tests.support.projects import ROOT
from autointerp_assets_tests.support.ray_cluster import ray_cluster
from autointerp_assets_tests.support.ray_backfill import (cluster_project, daemon, dagster, launch_backfill,
                                                          shared_llm, upstream, use_cluster, wait_for_backfill)
from autointerp_assets_tests.support.same_rows import compare_attached, max_difference, run_pipeline

pytestmark = pytest.mark.slow
RANGE = 32  # the tiny project's latent range size
WHOLE = ("latent_stats", "latent_selection", "example_windows", "latent_vectors")  # one replace per partition
# the scorer's P(yes) per item: the server batches the requests of concurrent steps otherwise than those of one
# process, and float32 logits differ in their last bits with the batch: equal to 1e-4, every other column exactly
LLM_PROBABILITY = ("score_items", "value")
KILL_AFTER_S = 3.0  # seconds a step executes on the second node before the node is killed


def partition_rows(con, alias: str) -> dict:
    """(table, layer, latent range) -> rows, for the tables a step writes whole."""
    return {(t, layer, r): n for t in WHOLE for layer, r, n in con.execute(
        f"SELECT layer, latent // {RANGE}, count(*) FROM {alias}.{t} GROUP BY ALL").fetchall()}


class Analyst(threading.Thread):
    """Queries the lake every second from its own connection: each partition's row count in the tables that a step
    writes whole; once, a read transaction held open for a few seconds while the writers go on."""

    def __init__(self, lake: Lake):
        super().__init__(daemon=True)
        self.lake, self.stop, self.error = lake, threading.Event(), None
        self.seen: list[dict] = []  # {(table, layer, range): rows} per query
        self.held: tuple[int, int, bool] | None = None  # (snapshots before, after, its counts unchanged)

    def run(self):
        try:
            con = duckdb.connect()
            self.lake.attach(con, "an", read_only=True)
            other = duckdb.connect()
            self.lake.attach(other, "an", read_only=True)
            while not self.stop.is_set():
                self.seen.append(partition_rows(con, 'an'))
                if self.held is None and len(self.seen) >= 20 and len(self.seen[-1]) > 0:
                    self.hold(con, other)
                time.sleep(1.0)
            con.close()
            other.close()
        except Exception as e:  # (seen by the test)
            self.error = repr(e)

    def hold(self, con, other, longest_s: float = 120.0) -> None:
        """A read transaction kept open until a writer has committed meanwhile (or ``longest_s``)."""
        snapshots = "SELECT max(snapshot_id) FROM ducklake_snapshots('an')"
        con.begin()
        before_counts, before = partition_rows(con, "an"), other.execute(snapshots).fetchone()[0]
        after, t0 = before, time.monotonic()
        while after == before and time.monotonic() - t0 < longest_s:
            time.sleep(0.5)
            after = other.execute(snapshots).fetchone()[0]  # another connection sees writers commit
        time.sleep(1.0)
        same = partition_rows(con, "an") == before_counts  # this one still reads its snapshot
        con.commit()
        self.held = (before, after, same)


class Killer(threading.Thread):
    """Kills the second Ray node (SIGKILL to it and every process it runs) once a step on it has started executing
    (its log says STEP_START) and run KILL_AFTER_S more seconds: mid-step. Records that step's Ray job; then a new
    node joins, as an autoscaler replaces a lost one."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        from ray.job_submission import JobSubmissionClient

        self.cluster, self.client, self.stop = cluster, JobSubmissionClient(cluster.dashboard), threading.Event()
        self.killed: dict | None = None

    def run(self):
        from ray.job_submission import JobStatus

        heads = {n for n, (head, _) in self.cluster.node_states().items() if head}
        started: dict[str, float] = {}  # submission id -> when its step was first seen executing
        while not self.stop.is_set() and self.killed is None:
            for job in self.client.list_jobs():
                if job.status != JobStatus.RUNNING or not job.driver_node_id or job.driver_node_id in heads:
                    continue
                if job.submission_id not in started and "STEP_START" in self.client.get_job_logs(job.submission_id):
                    started[job.submission_id] = time.monotonic()
                if time.monotonic() - started.get(job.submission_id, float("inf")) >= KILL_AFTER_S:
                    log = self.client.get_job_logs(job.submission_id)
                    self.cluster.nodes[1].kill()
                    self.killed = {"submission_id": job.submission_id, "node": job.driver_node_id,
                                   "step": (job.metadata or {}).get("dagster/op"), "log": log}
                    self.cluster.add_worker(2)
                    return
            time.sleep(0.5)


def test_a_backfill_on_a_ray_cluster_into_a_lake_has_every_row_of_one_process(tmp_path, monkeypatch):
    import dagster as dg

    with postgres_server() as pg, vllm_server("float32", prefix_caching=False) as llm_url:
        run_pipeline(ROOT, tmp_path / "file", extra=shared_llm(llm_url))  # one process, a DuckDB file
        env, lake = cluster_project(tmp_path / "ray", pg, llm_url, "ray")
        # 2 CPUs a node and a step: Ray sets a step's OMP_NUM_THREADS to its CPUs, and the forward pass and SAE
        # training sum in the order of their thread count: 2, as the one-process run on this 2-core machine
        with ray_cluster(workers=1, cpus_per_node=2, env=env) as cluster:
            use_cluster(env, cluster.dashboard, step_cpus=2, step_retries=2)
            for k in ("DAGSTER_HOME", "DAGSTER_PG_URL"):
                monkeypatch.setenv(k, env[k])
            analyst, killer = Analyst(lake), Killer(cluster)
            try:
                with daemon(env, tmp_path / "daemon.log"):
                    upstream(env)
                    analyst.start()
                    backfill_id, keys = launch_backfill(env)
                    killer.start()
                    with dg.DagsterInstance.get() as instance:
                        runs = wait_for_backfill(instance, backfill_id, len(keys))
                        retried = [e for r in runs for e in instance.all_logs(
                            r.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)]
                    killer.stop.set()
                    dagster(["job", "execute", "-j", "analyses_job"], env)
                    jobs = {j.submission_id: j for j in killer.client.list_jobs()}
            finally:
                analyst.stop.set()
                killer.stop.set()
            analyst.join(30)

        problems = []  # every check, reported together
        if [r.status for r in runs] != [dg.DagsterRunStatus.SUCCESS] * 4 or len(keys) != 4:
            problems.append(("runs", [r.status for r in runs], (tmp_path / "daemon.log").read_text()[-3000:]))
        # the kill: mid-step on the second node; that step failed its health check, was retried on another node
        k = killer.killed or {"log": "", "step": None, "submission_id": "?", "node": None}
        if killer.killed is None:
            problems.append("no step ran long enough on the second node to be killed")
        if "STEP_START" not in k["log"] or "STEP_SUCCESS" in k["log"]:
            problems.append(("not killed mid-step", k["log"][-2000:]))
        if not any(e.step_key == k["step"] for e in retried):
            problems.append(("no retry of the killed step", k["step"], [e.step_key for e in retried]))
        again = [j for s, j in jobs.items() if s.startswith(k["submission_id"] + "-")]
        if not again or again[-1].status != "SUCCEEDED" or again[-1].driver_node_id == k["node"]:
            problems.append(("the retry", k, again))

        con = duckdb.connect()
        con.execute(f"ATTACH '{tmp_path / 'file' / 'warehouse.duckdb'}' AS a (READ_ONLY)")
        lake.attach(con, "b", read_only=True)
        rows = compare_attached(con, tmp_path / "file", tmp_path / "ray", leave_out={LLM_PROBABILITY})
        n_items, matched, worst = max_difference(con, *LLM_PROBABILITY)
        final = partition_rows(con, "b")
        con.close()

    if {t for t, *_ in rows} != set(TABLES):
        problems.append(("tables compared", sorted({t for t, *_ in rows} ^ set(TABLES))))
    differ = [(t, n_a, n_b, d, cols) for t, n_a, n_b, d, cols in rows if d or cols or n_a != n_b]
    if differ:  # every row of every table, exactly
        problems.append(("rows differ", differ))
    if not (n_items > 0 and matched == n_items and worst < 1e-4):
        problems.append(("P(yes) per item", n_items, matched, worst))
    if analyst.error is not None:
        problems.append(("analyst", analyst.error))
    # whole partitions: each partition of each table absent or with its final rows, in every one of the queries
    half = [(key, n) for seen in analyst.seen for key, n in seen.items() if n != final.get(key)]
    if len(analyst.seen) < 30 or half or len({len(s) for s in analyst.seen}) <= 2:
        problems.append(("analyst saw", len(analyst.seen), half[:10], sorted({len(s) for s in analyst.seen})))
    if analyst.held is None or not (analyst.held[1] > analyst.held[0] and analyst.held[2]):
        problems.append(("writers did not commit while the analyst held a transaction", analyst.held))
    assert problems == [], problems
