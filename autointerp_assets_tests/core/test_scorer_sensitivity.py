"""Scorer sensitivity: a scorer that ignores the explanation is caught, one that reads it is not.

Known answers on a synthetic partition in a real DuckDB warehouse, scored through the real stages (scores,
scores) with in-process scorer doubles: a *blind* one that answers from the examples alone, and a
*reading* one whose answer depends on the explanation it is shown.
"""

from __future__ import annotations

import hashlib
import re

import polars as pl
import pytest

from autointerp_assets.core.config import load_config
from autointerp_assets.core.identity import explainer_fp
from autointerp_assets.core.llm.base import ChatResponse
from autointerp_assets.core.scoring import sensitivity
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.stages.scores import run_scores
from autointerp_assets.core.stages.classifier_scores import run_classifier_scores
from autointerp_assets.core.stages.summary import findings_lines
from autointerp_assets.defs.checks import sensitivity_status
from autointerp_assets_tests.conftest import write_config
from autointerp_assets_tests.support.synthetic import SAMPLER_FP, write_partition

N_RE = re.compile(r"Answer with a list of (\d+) value")


class Scorer:
    """Answers scorer prompts. blind: from each example's text alone (a hash); reading: from the explanation
    and the example together, so another explanation changes about half of the answers."""

    engine, model = "openai", "double"

    def __init__(self, reads: bool):
        self.reads = reads

    async def generate(self, requests):
        out = []
        for r in requests:
            user = r.messages[-1]["content"]
            n = int(N_RE.search(user).group(1))
            explanation = user.split("\n", 1)[0]
            examples = [ln for ln in user.split("\n") if ln.startswith("Example ")]
            bits = []
            for ex in examples[:n]:
                text = ex.split(": ", 1)[1] + (explanation if self.reads else "")
                bits.append(hashlib.sha256(text.encode()).digest()[0] & 1)
            out.append(ChatResponse(text="[" + ", ".join(map(str, bits)) + "]", prompt_tokens=50, completion_tokens=9))
        return out


@pytest.fixture()
def partition(tmp_path):
    cfg = load_config(write_config(tmp_path / "p.yaml", {
        "database": str(tmp_path / "s.duckdb"),
        "explainer": {"llm": {"engine": "openai", "model": "double", "base_url": "http://127.0.0.1:9/v1"}},
        "scorer": {"scorers": ["detection", "fuzzing"], "examples_per_prompt": 4, "logprobs": False},
        "scoring": {"scorers": [], "control_scorers": ["detection", "fuzzing"], "bootstrap_samples": 400}}))
    ctx = Context.of(cfg)
    latents = list(range(0, 24))
    write_partition(ctx.wh, "layers.1", latents, n_train=2, n_test=10, n_non_activating=10)
    efp = explainer_fp(cfg)
    with ctx.wh.write() as con:
        ctx.wh.insert(con, "explanations", pl.DataFrame([
            {"layer": "layers.1", "latent": lat, "explainer_fp": efp, "status": "ok",
             "explanation": f"Explanation number {lat} about topic {lat * 7 % 11}", "sampler_fp": SAMPLER_FP}
            for lat in latents]))
    return ctx, efp


def _run(ctx, reads: bool, force: bool = False):
    """``force``: re-send every pair (the stages are incremental: a done pair is otherwise kept)."""
    client = Scorer(reads)
    return run_scores(ctx, client, "layers.1", 0, 31, force=force)


def test_a_blind_scorer_is_flagged_and_a_reading_one_is_not(partition):
    ctx, efp = partition
    out = _run(ctx, reads=False)
    sens = {v["scorer"]: v for v in out["sensitivity"]}
    assert set(sens) == {"detection", "fuzzing"}
    for v in sens.values():
        assert v["latents"] == 24 and v["items"] == 24 * 20 and v["changed"] == 0 and v["share"] == 0.0
        assert v["reads_explanation"] is False and "does NOT read the explanation" in v["finding"]
    # the stored table agrees with an independent count from score_items (same example, both runs)
    indep = ctx.wh.query("""
        SELECT r.scorer, count(*) AS items, count(*) FILTER (WHERE r.prediction <> c.prediction) AS changed
        FROM score_items r JOIN score_items c ON c.layer = r.layer AND c.latent = r.latent
             AND c.explainer_fp = r.explainer_fp AND c.example_id = r.example_id AND c.truth = r.truth
             AND c.scorer = r.scorer || '_control'
        WHERE r.scorer IN ('detection', 'fuzzing') GROUP BY r.scorer ORDER BY r.scorer""")
    stored = ctx.wh.query("SELECT scorer, items, changed FROM scorer_sensitivity ORDER BY scorer")
    assert indep.rows() == stored.rows() == [("detection", 480, 0), ("fuzzing", 480, 0)]
    passed, md = sensitivity_status(ctx.wh, efp, "layers.1", "00000-00031")
    assert not passed and md["blind_scorers"] == "detection, fuzzing"
    report = ctx.wh.query("SELECT * FROM scorer_report WHERE scorer = 'detection'").row(0, named=True)
    assert report["reads_explanation"] is False and report["share_changed"] == 0.0
    assert report["median_difference"] == 0.0  # the same answers: real and control agree on every latent
    lines = findings_lines(ctx)
    assert len(lines) == 2 and lines[0].startswith("[layers.1 00000-00031") and "does NOT read" in lines[0]

    out = _run(ctx, reads=True, force=True)  # the same partition re-scored by a scorer that reads the explanation
    sens = {v["scorer"]: v for v in out["sensitivity"]}
    for v in sens.values():
        assert 0.35 < v["share"] < 0.65 and v["share_low"] > 0.1 and v["reads_explanation"] is True
        assert v["finding"].startswith(f"{v['scorer']} reads the explanation")
    passed, md = sensitivity_status(ctx.wh, efp, "layers.1", "00000-00031")
    assert passed and md["blind_scorers"] == "none"
    assert ctx.wh.scalar("SELECT count(*) FROM scorer_sensitivity") == 2  # replaced, not appended


def test_verdicts_and_value_labels():
    never = {lat: (40, 0) for lat in range(20)}
    assert sensitivity.assess("d", never, 0.1, 500, "s").reads_explanation is False
    often = {lat: (40, 16) for lat in range(20)}
    assert sensitivity.assess("d", often, 0.1, 500, "s").reads_explanation is True
    few = {0: (4, 0), 1: (4, 1)}  # 1 of 8 changed: the interval straddles the threshold
    unclear = sensitivity.assess("d", few, 0.1, 500, "s")
    assert unclear.reads_explanation is None and "unclear" in unclear.finding
    labels = sensitivity.value_labels([(0, 1, True), (0, 2, False), (0, 3, False), (1, 1, True), (1, 2, False)],
                                      [0.9, 0.1, 0.5, 0.2, 0.3])
    assert labels == {(0, 1, True): True, (0, 2, False): False, (0, 3, False): False,
                      (1, 1, True): False, (1, 2, False): True}
    per = sensitivity.changed_per_latent({(0, 1, True): True, (0, 2, False): None, (1, 1, True): False},
                                         {(0, 1, True): False, (0, 2, False): True, (1, 1, True): False})
    assert per == {0: (1, 1), 1: (1, 0)}  # an item unanswered in either run is not paired


def test_explanations_made_from_other_examples_are_never_scored(partition):
    """An explanation whose examples were re-sampled since (another sampler fingerprint: e.g. an older warehouse
    from before separators were excluded) is left out, not silently scored against the new examples."""
    ctx, efp = partition
    with ctx.wh.write() as con:
        con.execute("UPDATE explanations SET sampler_fp = 'sampler-older' WHERE latent < 4")
    out = run_classifier_scores(ctx, Scorer(True), "layers.1", 0, 31)
    assert out["latents"] == 20
    assert ctx.wh.scalar("SELECT count(DISTINCT latent) FROM scores WHERE latent < 4") == 0


class ConstantSimulator(Scorer):
    """Answers scorer lists like Scorer; simulation (JSON mode) with the same value for every token."""

    async def generate(self, requests):
        sims = [r for r in requests if "integers from 0 to 10" in r.messages[-1]["content"]]
        rest = await super().generate([r for r in requests if r not in sims])
        out, k = [], 0
        for r in requests:
            if r in sims:
                n = int(re.search(r"list of (\d+) integers", r.messages[-1]["content"]).group(1))
                out.append(ChatResponse(text="[" + ", ".join(["3"] * n) + "]", prompt_tokens=80, completion_tokens=n))
            else:
                out.append(rest[k])
                k += 1
        return out


def test_undefined_metrics_are_stored_with_a_reason_and_counted(tmp_path):
    """No non-activating example (balanced accuracy has one class) and a constant simulation (no correlation):
    status 'undefined' with why, counted as latents_undefined in scorer_summary, never an 'ok' TPR or r = 0."""
    cfg = load_config(write_config(tmp_path / "p.yaml", {
        "database": str(tmp_path / "u.duckdb"),
        "explainer": {"llm": {"engine": "openai", "model": "double", "base_url": "http://127.0.0.1:9/v1"}},
        "scorer": {"scorers": ["detection"], "examples_per_prompt": 4, "logprobs": False},
        "scoring": {"scorers": ["simulation"], "simulation_mode": "json", "control_scorers": ["detection"],
                           "bootstrap_samples": 200}}))
    ctx = Context.of(cfg)
    write_partition(ctx.wh, "layers.1", list(range(6)), n_train=2, n_test=6, n_non_activating=0)
    efp = explainer_fp(cfg)
    with ctx.wh.write() as con:
        ctx.wh.insert(con, "explanations", pl.DataFrame([
            {"layer": "layers.1", "latent": lat, "explainer_fp": efp, "status": "ok", "explanation": f"topic {lat}",
             "sampler_fp": SAMPLER_FP} for lat in range(6)]))
    client = ConstantSimulator(True)
    out = run_scores(ctx, client, "layers.1", 0, 31)
    rows = ctx.wh.query("SELECT scorer, status, status_reason, value, balanced_accuracy, recall FROM scores "
                        "WHERE NOT coalesce(control, false) ORDER BY scorer, latent")
    det = rows.filter(pl.col("scorer") == "detection")
    assert det.height == 6 and set(det["status"]) == {"undefined"} and det["balanced_accuracy"].null_count() == 6
    assert set(det["status_reason"]) == {"balanced accuracy undefined: no non-activating item was scored"}
    assert det["recall"].null_count() == 0  # the one defined rate is kept as what it is, not as a balanced accuracy
    sim = rows.filter(pl.col("scorer") == "simulation")
    assert set(sim["status"]) == {"undefined"} and sim["value"].null_count() == 6
    assert sim["status_reason"][0].startswith("correlation undefined: the simulated activations are the same")
    summary = {r["scorer"]: r for r in ctx.wh.query("SELECT * FROM scorer_summary").iter_rows(named=True)}
    assert (summary["detection"]["latents"], summary["detection"]["latents_undefined"]) == (0, 6)
    assert (summary["simulation"]["latents"], summary["simulation"]["latents_undefined"]) == (0, 6)
    assert out["summary"]["simulation"]["latents_undefined"] == 6


def test_a_changed_scorer_setting_rescores_that_scorer_only(partition):
    """A pair is done only under its scorer's current fingerprint: a re-run with the same settings sends nothing;
    another control seed (in the controls' fingerprint, not the real scorers') re-sends every control pair and
    no real one, and the stored control rows carry the new fingerprint."""
    ctx, _ = partition
    first = _run(ctx, reads=True)
    again = _run(ctx, reads=True)
    assert again["llm_calls"] == 0 and again["pairs_already_done"] == 48  # 24 latents x 2 controls
    assert again["classifiers"]["latents_sent"] == 0
    reseeded = Context(ctx.cfg.model_copy(update={"scoring": ctx.cfg.scoring.model_copy(
        update={"seed": ctx.cfg.scoring.seed + 1})}), ctx.wh, ctx.log)
    out = run_scores(reseeded, Scorer(True), "layers.1", 0, 31)
    assert out["classifiers"]["latents_sent"] == 0 and out["pairs_already_done"] == 0
    assert out["llm_calls"] == first["llm_calls"] > 0
    fps = ctx.wh.query("SELECT scorer, count(DISTINCT scorer_fp) AS n, count(*) AS rows FROM scores "
                       "WHERE scorer LIKE '%_control' GROUP BY 1 ORDER BY 1").rows()
    assert fps == [("detection_control", 1, 24), ("fuzzing_control", 1, 24)]
    assert ctx.wh.scalar("SELECT count(*) FROM scores s JOIN fingerprints f ON f.fingerprint = s.scorer_fp "
                         "WHERE s.scorer LIKE '%_control' AND (f.spec->>'$.control.seed') = ?",
                         [str(ctx.cfg.scoring.seed + 1)]) == 48
