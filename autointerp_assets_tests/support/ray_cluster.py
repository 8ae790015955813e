"""A throwaway Ray cluster on 127.0.0.1 for the scale-out tests and benchmark: a head and worker nodes, each a
``ray start --block`` process of its own (a session of its own, so one node can be killed whole, as a host dies),
each with its own ports and CPUs; stopped after. ``make ray`` installs Ray (requirements/ray.lock).

Importable without pytest (``benchmarks/scale_out.py`` starts one the same way).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .dagster_dev import free_port

START_TIMEOUT_S = 180


def _ray() -> str:
    exe = Path(sys.executable).parent / "ray"
    if not exe.exists():
        raise RuntimeError("Ray is not installed in this environment: run `make ray` (requirements/ray.lock)")
    return str(exe)


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    log: Path

    def descendants(self) -> list[int]:
        """Every process this node started (raylet, workers, job drivers and their children)."""
        import psutil

        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the node and everything it runs at once, as when its host dies."""
        pids = [self.proc.pid, *self.descendants()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)


@dataclass
class RayCluster:
    address: str  # the GCS address worker nodes join ("127.0.0.1:port")
    dashboard: str  # the job-submission address ("http://127.0.0.1:port")
    temp_dir: Path
    env: dict  # the nodes' environment
    nodes: list[Node] = field(default_factory=list)

    def node_states(self) -> dict[str, tuple[bool, str]]:
        """Ray's node id -> (is the head, ALIVE / DEAD), from the dashboard."""
        with urllib.request.urlopen(self.dashboard + "/nodes?view=summary", timeout=5) as r:
            body = json.load(r)
        return {n["raylet"]["nodeId"]: (bool(n["raylet"].get("isHeadNode")), n["raylet"]["state"])
                for n in body["data"]["summary"]}

    def add_worker(self, cpus: int) -> Node:
        """A worker node joining the cluster, as a process of its own (an autoscaler's replacement of a lost one)."""
        node = _start_node(f"worker{len(self.nodes)}", ["--address", self.address], self.temp_dir, cpus, self.env)
        self.nodes.append(node)
        return node

    def alive_nodes(self) -> int:
        return sum(state == "ALIVE" for _, state in self.node_states().values())


def _start_node(name: str, args: list[str], temp_dir: Path, num_cpus: int, env: dict) -> Node:
    log = temp_dir / f"{name}.log"
    ports = ["--node-manager-port", free_port(), "--object-manager-port", free_port(),
             "--dashboard-agent-listen-port", free_port(), "--dashboard-agent-grpc-port", free_port(),
             "--metrics-export-port", free_port(), "--runtime-env-agent-port", free_port(),
             "--min-worker-port", 0, "--max-worker-port", 0]
    cmd = [_ray(), "start", "--block", *args, "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus),
           "--disable-usage-stats", *map(str, ports)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return Node(name, proc, log)


def _wait(cluster: RayCluster, n_nodes: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        for node in cluster.nodes:
            if node.proc.poll() is not None:
                raise RuntimeError(f"Ray {node.name} exited ({node.proc.returncode}): {node.log.read_text()[-2000:]}")
        try:
            if cluster.alive_nodes() >= n_nodes:
                return
        except (OSError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            logs = " | ".join(n.log.read_text()[-800:] for n in cluster.nodes)
            raise RuntimeError(f"Ray cluster of {n_nodes} nodes not up in {START_TIMEOUT_S}s: {logs}")
        time.sleep(1)


@contextmanager
def ray_cluster(workers: int = 1, cpus_per_node: int = 1, env: dict | None = None) -> Iterator[RayCluster]:
    """A head node and ``workers`` worker nodes, ``cpus_per_node`` CPUs each; ``env``: the nodes' environment
    (what the steps they run see, besides what each job's runtime env sets)."""
    temp_dir = Path(tempfile.mkdtemp(prefix="autointerp-ray-"))
    env = {**(env or os.environ), "RAY_USAGE_STATS_ENABLED": "0",
           # a dead node is declared dead within ~6 s (default ~30 s), so its jobs fail over sooner
           "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "5",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    port, dash = free_port(), free_port()
    cluster = RayCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", temp_dir, env)
    try:
        cluster.nodes.append(_start_node("head", [
            "--head", "--port", str(port), "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dash), "--ray-client-server-port", str(free_port()),
            "--temp-dir", str(temp_dir / "ray")], temp_dir, cpus_per_node, env))
        _wait(cluster, 1)
        for _ in range(workers):
            cluster.add_worker(cpus_per_node)
        _wait(cluster, 1 + workers)
        yield cluster
    finally:
        for node in reversed(cluster.nodes):
            if node.proc.poll() is None:
                node.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)
