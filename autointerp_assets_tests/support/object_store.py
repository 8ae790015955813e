"""An S3 API server on 127.0.0.1 for the lake's object-store tests: moto's server (an in-memory implementation of
the S3 API; no S3-compatible server is installable here from PyPI or Debian), installed apart from the project's
packages in ``.venv/s3-server`` by ``make s3-server`` and run as its own process, stopped after.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .dagster_dev import free_port

INSTALLED = Path(sys.prefix) / "s3-server"
KEYS = {"AWS_ACCESS_KEY_ID": "autointerp-test", "AWS_SECRET_ACCESS_KEY": "autointerp-test-secret",
        "AWS_REGION": "us-east-1"}


@contextmanager
def s3_server() -> Iterator[str]:
    """A running S3 API server; yields its endpoint (``127.0.0.1:<port>``, plain HTTP, path-style buckets)."""
    if not (INSTALLED / "moto").is_dir():
        raise RuntimeError(f"the test S3 server is not installed in {INSTALLED}: run `make s3-server`")
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="s3-server-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, "PYTHONPATH": str(INSTALLED)}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    endpoint = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited ({proc.returncode}): {Path(log.name).read_text()[-1000:]}")
            try:
                urllib.request.urlopen(f"http://{endpoint}/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the S3 server did not answer in 60 s: {Path(log.name).read_text()[-1000:]}")
                time.sleep(0.5)
        yield endpoint
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        os.unlink(log.name)


def create_bucket(endpoint: str, bucket: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"http://{endpoint}/{bucket}", method="PUT"), timeout=10).close()


def object_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` in ``bucket`` (S3's ListObjectsV2, all pages)."""
    keys, token = [], None
    while True:
        query = f"list-type=2&prefix={urllib.parse.quote(prefix)}"
        query += f"&continuation-token={urllib.parse.quote(token)}" if token else ""
        with urllib.request.urlopen(f"http://{endpoint}/{bucket}?{query}", timeout=10) as r:
            root = ET.fromstring(r.read())
        ns = {"s3": root.tag.split("}")[0].strip("{")}
        keys += [k.text for k in root.findall("s3:Contents/s3:Key", ns)]
        token = root.findtext("s3:NextContinuationToken", namespaces=ns)
        if not token:
            return sorted(keys)
