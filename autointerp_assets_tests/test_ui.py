"""The UI server starts on 127.0.0.1 and its GraphQL API lists the assets with both partition dimensions."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest

from autointerp_assets_tests.support.dagster_dev import dagster_dev

QUERY = """{ assetNodes { assetKey { path } isPartitioned
  partitionDefinition { dimensionTypes { name } } } }"""


def _post(url: str, query: str) -> dict:
    req = urllib.request.Request(url, data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_ui_graphql_lists_assets_with_both_dimensions(tmp_path):
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dagster_dev({"DAGSTER_HOME": str(tmp_path)}) as port:
        deadline = time.time() + 120
        nodes = None
        while time.time() < deadline:
            try:
                data = _post(f"http://127.0.0.1:{port}/graphql", QUERY)
                nodes = data.get("data", {}).get("assetNodes")
                if nodes:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert nodes, "UI did not answer GraphQL within 120 s"
        by_name = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert set(by_name) >= {"corpus_tokens", "sparse_coders", "activations", "examples", "explanations", "scores"}
        for name in ("activations", "latent_stats", "examples", "explanations", "scores"):
            node = by_name[name]
            assert node["isPartitioned"]
            dims = sorted(d["name"] for d in node["partitionDefinition"]["dimensionTypes"])
            assert dims == ["latents", "layer"]
        assert not by_name["corpus_tokens"]["isPartitioned"]
        # bound to loopback only
        with pytest.raises(OSError):
            ip = socket.gethostbyname(socket.gethostname())
            if ip.startswith("127."):
                raise OSError("no non-loopback address to probe")
            socket.create_connection((ip, port), timeout=2)
