"""explainer_change sensor with Dagster's own sensor context over a really materialized project:
no change → skip; change → one request per materialized partition (executed for real); unchanged → skip;
the old explainer's rows survive."""

from __future__ import annotations

import dagster as dg
import pytest

from autointerp_assets.core.config import ConfigError, load_config
from autointerp_assets.core.identity import explainer_fp
from autointerp_assets.core.registry import active_config
from autointerp_assets.core.stages.baseline_explanations import baseline_contexts
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.storage import Warehouse
from autointerp_assets.defs.assets import calibration, explanations, latent_pages, latent_vectors, scores, steering
from autointerp_assets.defs.checks import CHECKS
from autointerp_assets.defs.resources import LLMResource, ProjectResource
from autointerp_assets.defs.sensors import EXPLAINER_FP_TAG, EXPLAINER_TAG, explainer_change
from autointerp_assets_tests.conftest import write_config
from autointerp_assets_tests.support.automation_base import KEYS, base_project, project_copy, write_registry


def tick(instance, config, cursor):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor,
                                  resources={"project": ProjectResource(config_path=str(config))})
    return explainer_change(ctx), ctx


def counts(wh: Warehouse, table: str) -> dict[str, int]:
    return dict(wh.query(f"SELECT explainer_fp, count(*) FROM {table} GROUP BY ALL").iter_rows())


@pytest.mark.slow
def test_sensor_reexplains_every_partition_on_explainer_change():
    base, home = base_project()
    config = project_copy("sensor")  # no registry yet: the project config's explainer is active
    cfg = load_config(config)
    wh = Warehouse(cfg.resolve(cfg.database))
    old_fp = explainer_fp(active_config(config))
    assert old_fp == explainer_fp(cfg)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # first tick on an up-to-date project: nothing to do, the fingerprint becomes the cursor
        result, ctx = tick(instance, config, None)
        assert isinstance(result, dg.SensorResult) and not result.run_requests
        assert result.cursor == old_fp
        result, _ = tick(instance, config, old_fp)
        assert isinstance(result, dg.SkipReason) and "unchanged" in result.skip_message

        before = {t: counts(wh, t) for t in ("explanations", "scores")}
        baselines = {explainer_fp(b.cfg) for b in baseline_contexts(Context.of(cfg))}
        assert set(before["explanations"]) == {old_fp} | baselines and len(baselines) == 2

        # the user declares a terser explainer and makes it active
        write_registry(config, {"active_explainer": "terse", "explainers": {"terse": {"max_tokens": 24}}})
        new_fp = explainer_fp(active_config(config))
        assert new_fp != old_fp
        result, _ = tick(instance, config, old_fp)
        reqs = [r for r in result.run_requests if r.partition_key is not None]
        (cal,) = [r for r in result.run_requests if r.partition_key is None]  # and the calibration, once
        assert cal.run_key == f"{new_fp}|calibration"
        assert cal.tags[EXPLAINER_FP_TAG] == new_fp
        assert result.cursor == new_fp
        assert sorted(r.partition_key for r in reqs) == KEYS  # one per materialized partition
        assert {r.run_key for r in reqs} == {f"{new_fp}|{k}" for k in KEYS}
        assert all(r.tags[EXPLAINER_TAG] == "terse" and r.tags[EXPLAINER_FP_TAG] == new_fp for r in reqs)
        from autointerp_assets.definitions import defs

        sensor = defs.resolve_sensor_def("explainer_change")
        assert {t.job_name for t in sensor.targets} == {"reexplain_and_rescore", "calibrate"}  # run names that say what ran
        job = defs.resolve_job_def("reexplain_and_rescore")
        assert set(job.asset_layer.executable_asset_keys) == {steering.key, explanations.key, scores.key,
                                                              latent_vectors.key, latent_pages.key}
        assert all(r.job_name == job.name for r in reqs) and cal.job_name == "calibrate"
        calibrate = defs.resolve_job_def("calibrate")
        assert set(calibrate.asset_layer.executable_asset_keys) == {calibration.key}
        assert dg.validate_run_config(calibrate, cal.run_config)

        # run them as the daemon would: the pinned explainer comes in through run config
        for r in reqs:
            assert dg.validate_run_config(job, r.run_config)
            res = dg.materialize([explanations, scores, *CHECKS], partition_key=r.partition_key,
                                 run_config=r.run_config,
                                 tags=r.tags, instance=instance,
                                 resources={"project": ProjectResource(config_path=str(config)), "llm": LLMResource()})
            assert res.success
            evals = {e.check_name: e.passed for e in res.get_asset_check_evaluations()}
            # control_at_chance / scorer_reads_explanation are warnings whose outcome on 4 latents is noise; they
            # must run, their verdicts may vary
            assert evals.pop("control_at_chance") in (True, False)
            assert evals.pop("scorer_reads_explanation") in (True, False)
            assert evals == {"explanations_cover_selection": True, "scores_for_every_explanation": True}

        after = {t: counts(wh, t) for t in ("explanations", "scores")}
        for t in after:
            assert after[t][old_fp] == before[t][old_fp], f"{t}: the old explainer's rows changed"
        selected = wh.scalar("SELECT count(*) FROM latent_selection WHERE status = 'selected'")
        assert after["explanations"][new_fp] == selected > 0  # every selected latent of both partitions
        assert wh.scalar("SELECT count(DISTINCT layer) FROM explanations WHERE explainer_fp = ?", [new_fp]) == 2
        assert wh.scalar("SELECT count(*) FROM explanations WHERE explainer_fp = ? AND status = 'ok' AND "
                         "NOT EXISTS (SELECT 1 FROM scores s WHERE s.explainer_fp = explanations.explainer_fp "
                         "AND s.layer = explanations.layer AND s.latent = explanations.latent)", [new_fp]) == 0
        # the new explainer's settings really were used
        spec = wh.scalar("SELECT spec->>'$.settings.max_tokens' FROM fingerprints WHERE fingerprint = ?", [new_fp])
        assert spec == "24"

        # the calibration run (test_calibration / test_pipeline run the asset itself): recorded for the new explainer
        instance.report_runless_asset_event(dg.AssetMaterialization(calibration.key, metadata={"explainer_fp": new_fp}))

        # unchanged again → skip; back to the old explainer → nothing to redo (its rows are there)
        result, _ = tick(instance, config, new_fp)
        assert isinstance(result, dg.SkipReason)
        write_registry(config, {"active_explainer": "project", "explainers": {"terse": {"max_tokens": 24}}})
        result, _ = tick(instance, config, new_fp)
        assert not result.run_requests and result.cursor == old_fp


def test_bad_registry_is_one_line_naming_the_fix(tmp_path):
    config = write_config(tmp_path / "project.yaml")
    write_registry(config, {"active_explainer": "nope", "explainers": {"terse": {"max_tokens": 24}}})
    with pytest.raises(ConfigError, match="active_explainer 'nope' is not declared") as e:
        active_config(config)
    assert "\n" not in str(e.value)
    write_registry(config, {"active_explainer": "terse", "explainers": {"terse": {"max_tokens": -1}}})
    with pytest.raises(ConfigError, match="explainers.terse.max_tokens"):
        active_config(config)
    write_registry(config, {"active": "terse"})
    with pytest.raises(ConfigError, match="allowed keys"):
        active_config(config)


@pytest.mark.slow
def test_asset_checks_pass_on_a_complete_partition_and_fail_on_gaps(tmp_path):
    """The checks' logic on a snapshot of the materialized project, where gaps can be cut without harm."""
    from autointerp_assets.defs.checks import examples_status, explanations_status, scores_status

    base, _ = base_project()
    cfg = active_config(base)
    wh = Warehouse(Warehouse(cfg.resolve(cfg.database)).snapshot(tmp_path / "snapshot.duckdb"))
    efp, scorers = explainer_fp(cfg), list(cfg.scorer.scorers)
    for layer in ("layers.1", "layers.3"):
        assert examples_status(wh, layer, 0, 31)[0]
        assert explanations_status(wh, efp, layer, 0, 31)[0]
        assert scores_status(wh, efp, scorers, layer, 0, 31)[0]
    assert not examples_status(wh, "layers.1", 32, 63)[0]  # a range where nothing was selected
    assert not explanations_status(wh, "explainer-never-ran", "layers.1", 0, 31)[0]
    with wh.write() as con:  # one explained latent loses its scores; one selected latent its explanation
        lat = con.execute("SELECT min(latent) FROM explanations WHERE explainer_fp = ? AND status = 'ok' "
                          "AND layer = 'layers.1'", [efp]).fetchone()[0]
        con.execute("DELETE FROM scores WHERE explainer_fp = ? AND layer = 'layers.1' AND latent = ? "
                    "AND scorer = ?", [efp, lat, scorers[0]])
        con.execute("DELETE FROM explanations WHERE explainer_fp = ? AND layer = 'layers.3' AND latent = "
                    "(SELECT min(latent) FROM explanations WHERE layer = 'layers.3')", [efp])
    passed, md = scores_status(wh, efp, scorers, "layers.1", 0, 31)
    assert not passed and md["missing_scores"] == 1
    passed, md = explanations_status(wh, efp, "layers.3", 0, 31)
    assert not passed and md["missing"] == 1
    assert scores_status(wh, efp, scorers, "layers.3", 0, 31)[0]  # untouched where nothing was cut
