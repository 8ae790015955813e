"""The fault matrix: `autointerp run` against a local server on 127.0.0.1 that answers every request with one
fault (500, garbage, a hang past the timeout, 429 with Retry-After, answers truncated by a dropped connection,
401) or is not there
(a closed port). For each fault, starting from a good run that left 3 of 5 latents' work missing:

- the faulty run exits non-zero with one line per failure that names the server, the error and the fix;
- every table keeps every row it had (byte for byte: good rows are never replaced by failures), and gains
  at most failure rows for the missing work and ledger rows;
- the next good run sends exactly the missing work — the same requests, counted and compared one by one,
  as a good run from the same starting point — and ends with the same results.

Also: auth and connection errors met inside a stage (no preflight) stop it at once with one line, without a
row per latent; a forced run that fails keeps every good row and records the failure beside it.
"""

from __future__ import annotations

import socket

import dagster as dg
import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.storage import Warehouse
from autointerp_assets.defs.assets import explanations, scores
from autointerp_assets.defs.resources import LLMResource, ProjectResource
from autointerp_assets_tests.support.fake_openai import FakeOpenAIServer
from autointerp_assets_tests.support.llm_faults import (AFTER, BEFORE, GROWING, HISTORY, KEY_ENV, LAYER, RANGE, bodies,
                                                        copy_db, fast_dir, project, results, run_cli, seed, set_env,
                                                        tables)

pytestmark = pytest.mark.slow

# fault -> what its one line must say (the CLI's stderr), and the exit status
FAULTS = {
    "500": ("InternalServerError: Error code: 500", "check the LLM server", 1),
    "garbage": ("sent failed after retries", "check the LLM server", 1),
    "hang": ("APITimeoutError", "llm.timeout_s", 1),
    "429": ("RateLimitError: Error code: 429", "check the LLM server", 1),
    "truncated": ("APIConnectionError", "check the LLM server", 1),
    "401": ("answered 401 Unauthorized", f"${KEY_ENV} is not set: export", 2),
    "closed_port": ("cannot connect to LLM server http://127.0.0.1:", "start the server or fix llm.base_url", 2),
}


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def matrix():
    """The server, the start state (good run over latents 0-1, then 2-4 added) and the reference: a good run
    from the start state (its requests and its results are what every recovery must reproduce)."""
    root = fast_dir("autointerp-matrix-")
    home = root / "dagster_home"
    with FakeOpenAIServer(hang_s=1.0) as srv, pytest.MonkeyPatch.context() as mp:
        base = project(root, "base", srv.url)
        set_env(mp, base, home)
        wh = seed(root / "base.duckdb", BEFORE)
        assert run_cli() == 0
        seed(root / "base.duckdb", AFTER)
        start = copy_db(root / "base.duckdb", root / "start.duckdb")
        ref = project(root, "reference", srv.url)
        copy_db(start, root / "reference.duckdb")
        set_env(mp, ref, home)
        mark = len(srv.bodies)
        assert run_cli() == 0
        reference = {"bodies": bodies(srv, mark), "results": results(Warehouse(root / "reference.duckdb"))}
        assert len(reference["bodies"]) > 0 and wh.scalar("SELECT count(*) FROM explanations") == len(BEFORE)
        yield {"root": root, "home": home, "srv": srv, "start": start, "reference": reference}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_keeps_good_rows_fails_the_run_and_the_next_run_sends_exactly_the_missing_work(matrix, fault, capsys,
                                                                                              monkeypatch):
    root, srv = matrix["root"], matrix["srv"]
    name = f"fault-{fault}"
    wh = Warehouse(copy_db(matrix["start"], root / f"{name}.duckdb"))
    before = tables(wh)
    url = closed_port_url() if fault == "closed_port" else srv.url
    set_env(monkeypatch, project(root, name, url), matrix["home"])
    srv.mode = fault if fault in srv.MODES else "ok"
    received = srv.received
    try:
        rc = run_cli()
    finally:
        srv.mode = "ok"
    err = capsys.readouterr().err
    want, fix, status = FAULTS[fault]
    assert rc == status, err
    assert "Traceback" not in err and "Stack Trace" not in err
    failed = [ln for ln in err.splitlines() if want in ln]
    assert failed and all(fix in ln for ln in failed), err
    if status == 2:  # found before any work: nothing was sent, the warehouse was not touched
        assert srv.received == received and tables(wh) == before
    else:
        assert f"{RANGE}|{LAYER} explanations:" in err and "1 of 1 partitions FAILED" in err
        after = tables(wh)
        for t, rows in before.items():  # every row still there, unchanged, and only result tables grow
            assert not rows - after[t], t
            if t not in GROWING:
                assert after[t] == rows, t
        new = wh.query("SELECT latent, status FROM explanations WHERE status <> 'ok'")
        assert set(new["latent"]) <= set(AFTER) - set(BEFORE)  # failures only where work was missing
        assert wh.scalar("SELECT count(*) FROM explanations WHERE status = 'ok'") == len(BEFORE)
        assert wh.scalar("SELECT count(*) FROM llm_calls WHERE status = 'sent'") == 0  # every call completed

    # the server is good again (and, for the closed port, the config points at it)
    set_env(monkeypatch, project(root, name, srv.url), matrix["home"])
    mark, received = len(srv.bodies), srv.received
    assert run_cli() == 0, capsys.readouterr().err
    sent = bodies(srv, mark)
    assert srv.received - received == sum(matrix["reference"]["bodies"].values())  # exactly the missing work
    assert sent == matrix["reference"]["bodies"]  # ... request for request
    got, ref = results(wh), matrix["reference"]["results"]
    for k in ("explanations", "scores", "score_items"):
        assert got[k] == ref[k], k
    assert wh.scalar("SELECT count(*) FROM explanations WHERE status = 'ok'") == len(AFTER)


def _materialize(config, selection, tags=None):
    key = dg.MultiPartitionKey({"layer": LAYER, "latents": RANGE})
    with dg.instance_for_test() as inst:
        return dg.materialize([explanations, scores], selection=selection, partition_key=key, instance=inst,
                              raise_on_error=False, tags=tags,
                              resources={"project": ProjectResource(config_path=str(config)), "llm": LLMResource()})


@pytest.mark.parametrize("fault", ["401", "closed_port"])
def test_auth_and_connection_errors_stop_the_stage_at_once(matrix, fault, monkeypatch):
    """Inside a stage (a run launched from the UI: no preflight): one line, at most one request per slot, no
    per-latent failure rows."""
    root, srv = matrix["root"], matrix["srv"]
    name = f"stop-{fault}"
    wh = Warehouse(copy_db(matrix["start"], root / f"{name}.duckdb"))
    before = tables(wh)
    runs = wh.query("SELECT DISTINCT run_id FROM llm_calls")["run_id"].to_list()
    url = closed_port_url() if fault == "closed_port" else srv.url
    config = project(root, name, url, explainer={"llm": {"max_concurrency": 1, "max_retries": 5}})
    monkeypatch.delenv(KEY_ENV, raising=False)
    srv.mode = fault if fault == "401" else "ok"
    received = srv.received
    try:
        res = _materialize(config, [explanations])
    finally:
        srv.mode = "ok"
    assert not res.success
    (event,) = res.get_step_failure_events()
    msg = event.step_failure_data.user_failure_data.description
    assert "\n" not in msg and msg.startswith(f"explanations of {LAYER} latents 0-31: ")
    if fault == "401":
        assert f"answered 401 Unauthorized: ${KEY_ENV} is not set" in msg and srv.url in msg
        assert srv.received - received == 1  # one request, not one per latent and retry
    else:
        assert "cannot connect to LLM server http://127.0.0.1:" in msg and "start the server or fix llm.base_url" in msg
    assert "stopped at once" in msg
    after = tables(wh)
    for t in ("explanations", "scores", "score_items"):
        assert after[t] == before[t], t  # nothing recorded per latent
    calls = wh.query("SELECT status, attempts, prompt_tokens FROM llm_calls WHERE run_id NOT IN (SELECT unnest(?))",
                     [runs])
    # the ledger: every request reserved, then completed (the closed port's URL is another explainer fingerprint,
    # so all 5 latents were its work; the 401 run had the 3 missing ones)
    todo = len(AFTER) if fault == "closed_port" else len(AFTER) - len(BEFORE)
    assert calls.height == todo and f"({todo} latents were to be sent;" in msg
    assert set(calls["status"]) <= {"error", "unsent"} and calls["attempts"].sum() <= 1


def test_a_forced_run_that_fails_keeps_every_good_row_and_the_failure_beside_it(matrix, capsys, monkeypatch):
    root, srv = matrix["root"], matrix["srv"]
    wh = Warehouse(copy_db(matrix["start"], root / "forced.duckdb"))
    good = wh.query("SELECT * FROM explanations ORDER BY latent")
    good_scores = wh.query("SELECT * EXCLUDE (attempts, failed_attempts, last_error, last_failed_at) FROM scores "
                           "ORDER BY latent, scorer")
    set_env(monkeypatch, project(root, "forced", srv.url), matrix["home"])
    srv.mode = "500"
    try:
        assert run_cli("--force") == 1
    finally:
        srv.mode = "ok"
    assert "InternalServerError" in capsys.readouterr().err
    now = wh.query("SELECT * FROM explanations WHERE latent IN (SELECT unnest(?)) ORDER BY latent", [BEFORE])
    cols = [c for c in good.columns if c not in HISTORY]
    assert now.select(cols).equals(good.select(cols))  # the good explanations, untouched
    assert now["status"].to_list() == ["ok"] * len(BEFORE)
    assert now["attempts"].to_list() == [2] * len(BEFORE) and now["failed_attempts"].to_list() == [1] * len(BEFORE)
    assert all("InternalServerError" in e for e in now["last_error"])
    kept = wh.query("SELECT stage, status, detail FROM failures WHERE status = 'ok (kept)'")
    assert kept.height == len(BEFORE) and set(kept["stage"]) == {"explanation"}
    # the forced run stopped at explanations: the scores of the good explanations were not touched
    assert wh.query("SELECT * EXCLUDE (attempts, failed_attempts, last_error, last_failed_at) FROM scores "
                    "ORDER BY latent, scorer").equals(good_scores)


def test_checks_fail_a_partition_whose_failures_pass_the_share(matrix, monkeypatch):
    """The asset checks read the same rule: failures beyond failures.max_share fail them (they passed before)."""
    from autointerp_assets.core.identity import explainer_fp
    from autointerp_assets.defs.checks import explanations_status

    root = matrix["root"]
    wh = Warehouse(copy_db(matrix["start"], root / "checks.duckdb"))
    cfg = load_config(project(root, "checks", matrix["srv"].url))
    efp = explainer_fp(cfg)
    with wh.write() as con:
        con.execute("INSERT INTO latent_selection (layer, latent, status, n_windows, sampler_fp) "
                    "SELECT layer, latent, 'selected', 1, 'x' FROM explanations WHERE false")
    ok, md = explanations_status(wh, efp, LAYER, 0, 31, 0.2)
    assert not ok and md["missing"] == len(AFTER) - len(BEFORE)  # missing work: fails
    with wh.write() as con:
        con.execute("INSERT INTO explanations (layer, latent, explainer_fp, status, error, sampler_fp) "
                    "SELECT ?, unnest(?::INTEGER[]), ?, 'llm_error', 'InternalServerError', 's'",
                    [LAYER, [2, 3, 4], efp])
    ok, md = explanations_status(wh, efp, LAYER, 0, 31, 0.2)
    assert not ok and md["failed"] == 3 and md["missing"] == 0  # 3 of 5 failed: more than 0.2
    ok, md = explanations_status(wh, efp, LAYER, 0, 31, 1.0)
    assert ok
