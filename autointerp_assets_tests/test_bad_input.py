"""Every bad input we know of, run through the real CLI: each stops with one line that names the problem and the
fix, before any heavy work (or, found later, names the file / line / partition at fault), never a traceback.

The test writes the table of cases and their lines to docs/bad_input.md and fails when the committed file
differs (then commit the regenerated file): the table cannot drift from what the CLI prints.
"""

from __future__ import annotations

import re
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from autointerp_assets import cli
from autointerp_assets.core import preflight
from autointerp_assets_tests.conftest import ROOT, TMP
from autointerp_assets_tests.support.fake_openai import FakeOpenAIServer
from autointerp_assets_tests.support.llm_faults import KEY_ENV, LAYER, fast_dir, project, seed, set_env

pytestmark = pytest.mark.slow

DOC = ROOT / "docs" / "bad_input.md"
MODEL = ROOT / "data" / "models" / "SmolLM2-135M-Instruct"


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _files(root: Path) -> dict[str, Path]:
    """The bad files the cases point at."""
    out = {}
    d = root / "truncated-model"
    d.mkdir()
    (d / "config.json").write_text((MODEL / "config.json").read_text())
    with (MODEL / "model.safetensors").open("rb") as src, (d / "model.safetensors").open("wb") as dst:
        dst.write(src.read(1 << 20))  # the first MiB of a 269 MB checkpoint: a copy that was cut short
    out["model"] = d
    sae = root / "saes"
    for h in ("layers.1", "layers.3"):
        (sae / h).mkdir(parents=True)
        (sae / h / "cfg.json").write_text('{"d_in": 576, "num_latents": 64, "k": 16}')
        (sae / h / "sae.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"W_enc\": {\"dtype")
    out["sae"] = sae
    (root / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me, na\xefve.\n".encode("latin-1"))
    out["txt"] = root / "latin1.txt"
    (root / "latin1.jsonl").write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    out["jsonl_bytes"] = root / "latin1.jsonl"
    (root / "broken.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n{"text": "three\n{"text": "four"}\n')
    out["jsonl"] = root / "broken.jsonl"
    (root / "no-field.jsonl").write_text('{"body": "one"}\n')
    out["field"] = root / "no-field.jsonl"
    good = "".join(f'{{"text": "document {i} about nothing in particular"}}\n' for i in range(400))
    (root / "late.jsonl").write_text(good + '{"text": oops}\n')
    out["late"] = root / "late.jsonl"
    seed(root / "whole.duckdb", [0, 1])
    data = (root / "whole.duckdb").read_bytes()
    (root / "half.duckdb").write_bytes(data[: len(data) // 2])  # a copy cut in half
    out["warehouse"] = root / "half.duckdb"
    return out


def _cases(root: Path, url: str, files: dict[str, Path]) -> list[tuple[str, list[str], dict, str]]:
    """(what is wrong, command, config overrides, env) per case; '{url}' is the fake server."""
    srv = {"engine": "openai", "model": "smollm2", "base_url": url, "api_key_env": KEY_ENV}
    return [
        ("`engine: openai` without `base_url`", ["run"], {"explainer": {"llm": {"base_url": None}}}, ""),
        ("`base_url` with the in-process `vllm` engine", ["run"], {"explainer": {"llm": {"engine": "vllm"}}}, ""),
        ("a server off this machine, its key variable empty", ["run"],
         {"explainer": {"llm": {**srv, "base_url": "https://api.example.com/v1"}}}, ""),
        ("the server answers 401 (no or wrong key)", ["run"], {"explainer": {"llm": srv}}, "401"),
        ("nothing listens at `base_url` (closed port)", ["run"],
         {"explainer": {"llm": {**srv, "base_url": f"http://127.0.0.1:{_closed_port()}/v1"}}}, ""),
        ("the server does not serve `llm.model`", ["run"], {"explainer": {"llm": {**srv, "model": "gpt-nope"}}}, ""),
        ("a truncated model checkpoint (`model.safetensors` cut short)", ["run"],
         {"subject_model": str(files["model"])}, ""),
        ("a truncated sparse coder (`sae.safetensors`)", ["run"], {"sae": {"source": str(files["sae"])}}, ""),
        ("a Hugging Face name while the Hub is offline and it is not cached", ["run"],
         {"subject_model": "EleutherAI/no-such-model-here"}, ""),
        ("a corpus `.txt` that is not UTF-8", ["run"], {"corpus": {"source": str(files["txt"])}}, ""),
        ("a corpus `.jsonl` that is not UTF-8", ["run"], {"corpus": {"source": str(files["jsonl_bytes"])}}, ""),
        ("a malformed JSONL line", ["run"], {"corpus": {"source": str(files["jsonl"])}}, ""),
        ("JSONL records without the text column", ["run"], {"corpus": {"source": str(files["field"])}}, ""),
        ("a malformed JSONL line past the first 4 MiB (found by the corpus stage)", ["run"],
         {"corpus": {"source": str(files["late"])}}, "late"),
        ("`corpus.n_tokens` smaller than `corpus.ctx_len`", ["run"], {"corpus": {"n_tokens": 100}}, ""),
        ("`sampler.n_non_activating: 0` (balanced accuracy needs negatives)", ["run"],
         {"sampler": {"n_non_activating": 0}}, ""),
        ("a mistyped key in the config", ["run"], {"explainer": {"max_tokns": 10}}, ""),
        ("a mistyped `database:` path, then a read", ["sql", "select 1"],
         {"database": str(root / "autointerp.dukdb")}, ""),
        ("a warehouse file cut in half", ["run"], {"database": str(files["warehouse"])}, ""),
        ("a warehouse file cut in half, then a read", ["sql", "select 1"], {"database": str(files["warehouse"])}, ""),
    ]


FULL_DISK = """
import os, resource, signal, sys
import polars as pl
from autointerp_assets.core.errors import one_line
from autointerp_assets.core.storage import Warehouse
wh = Warehouse(sys.argv[1]); wh.init()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = os.path.getsize(sys.argv[1]) + (256 << 10)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
rows = pl.DataFrame({"corpus_fp": ["x"] * 200_000, "row_id": range(200_000), "token_ids": [[1, 2, 3, 4] * 16] * 200_000},
                    schema_overrides={"token_ids": pl.List(pl.Int32)})
try:
    with wh.write() as con:
        wh.insert(con, "tokens", rows)
except Exception as e:
    print(f"autointerp: {one_line(e)}")
"""


def _full_disk(root: Path) -> str:
    """A commit that fails because the file cannot grow (a file-size limit stands in for a full disk)."""
    db = root / "full.duckdb"
    seed(db, [0, 1])
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(db)], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(root)})
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and len(lines) == 1, out.stdout + out.stderr
    from autointerp_assets.core.storage import Warehouse

    assert Warehouse(db).scalar("SELECT count(*) FROM tokens WHERE corpus_fp = 'x'") == 0  # rolled back
    return lines[0]


def _normalize(line: str, root: Path, url: str) -> str:
    line = line.replace(str(root), "<tmp>").replace(str(TMP), "<tmp>").replace(str(ROOT), "<repo>")
    line = line.replace(url, "http://127.0.0.1:<port>/v1") if url else line
    line = re.sub(r"127\.0\.0\.1:\d{5}", "127.0.0.1:<port>", line)  # ephemeral ports (not 8000 in examples)
    line = re.sub(r"\d[\d,]* MiB free", "<n> MiB free", line)
    line = re.sub(r"duckdb \(\d[\d,]* bytes\)", "duckdb (<n> bytes)", line)
    line = re.sub(r"read \d+ bytes from location \d+", "read <n> bytes from location <n>", line)
    return re.sub(r"\d{2}:\d{2}:\d{2} ", "", line)


def test_every_bad_input_stops_with_one_line_and_the_docs_table_is_current(monkeypatch, capsys):
    root = fast_dir("autointerp-bad-input-")
    files = _files(root)
    rows = []
    with FakeOpenAIServer() as srv:
        for i, (what, cmd, over, mode) in enumerate(_cases(root, srv.url, files)):
            config = project(root, f"case{i}", srv.url, **over)
            set_env(monkeypatch, config, root / "dagster_home")
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
            if mode == "late":
                monkeypatch.setattr(preflight, "_SAMPLE_BYTES", 4096)  # a small file stands in for a big one
            srv.mode = "401" if mode == "401" else "ok"
            received = srv.received
            rc = cli.main(cmd)
            err = capsys.readouterr().err
            assert rc == (1 if mode == "late" else 2) and "Traceback" not in err, (what, err)
            lines = [ln for ln in err.splitlines() if ln.startswith("autointerp")]
            assert len(lines) == 1, (what, err)
            line = lines[0]
            assert srv.received == received, what  # nothing was sent to the LLM server
            if mode == "late":  # found by the stage: names the step, the file and the line
                assert line.startswith("autointerp: corpus_tokens: corpus file") and "line 401" in line, line
            rows.append((what, "autointerp " + " ".join(f'"{c}"' if " " in c else c for c in cmd),
                         _normalize(line, root, srv.url)))
            monkeypatch.setattr(preflight, "_SAMPLE_BYTES", 4 << 20)
    rows.append(("the disk fills up during a commit (here: a file-size limit)", "any stage's write",
                 _normalize(_full_disk(root), root, "")))
    for what, _, line in rows:
        assert ":" in line and len(line) < 600, (what, line)
    doc = _table(rows)
    current = DOC.read_text() if DOC.exists() else ""
    if current != doc:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(doc)
        pytest.fail(f"{DOC} was out of date: regenerated it from the CLI's output; commit it")


def _table(rows) -> str:
    head = ("# Bad input: what `autointerp` prints\n\n"
            "Generated by `autointerp_assets_tests/test_bad_input.py`, which runs every case through the CLI (do not "
            "edit by hand: the test fails when this file differs from what the CLI prints, and rewrites it). "
            "Each problem stops with **one line** naming what is at fault and the fix; exit status 2 when found "
            "before any work (the config, then `preflight`: models, sparse coders, corpus, warehouse, LLM "
            "servers), 1 when a stage fails later (the line names the step, and the file, line, partition or "
            "server). Tracebacks stay in the Dagster log (`$DAGSTER_HOME`, the UI's run page). `<tmp>`, "
            "`<port>`: this test's scratch paths and server port.\n\n"
            "| bad input | command | the one line it prints |\n|---|---|---|\n")
    esc = lambda s: s.replace("|", "\\\\|")  # noqa: E731
    return head + "".join(f"| {esc(w)} | `{c}` | {esc(line)} |\n" for w, c, line in rows)


del resource, signal, LAYER
