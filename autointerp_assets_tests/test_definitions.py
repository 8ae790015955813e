"""The code location loads and exposes layer × latents partitions derived from the config."""

import ast
import json
from pathlib import Path

import dagster as dg
import pytest

from autointerp_assets.core.config import ConfigError, load_config, parse_config
from autointerp_assets_tests.conftest import TINY


def test_definitions_load_with_two_dimensional_partitions():
    from autointerp_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    # named jobs, so runs say what ran
    assert {"corpus_and_sparse_coders", "latent_range_pipeline", "reexplain_and_rescore"} <= \
        {j.name for j in defs.resolve_all_job_defs()}
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {"corpus_tokens", "sparse_coders", "calibration", "activations", "latent_stats", "examples",
                    "steering", "explanations", "scores", "latent_vectors", "latent_pages", "analyses"}
    for name in ("activations", "latent_stats", "examples", "steering", "explanations", "scores", "latent_vectors",
                 "latent_pages"):
        pd = defs.resolve_assets_def(name).partitions_def
        assert isinstance(pd, dg.MultiPartitionsDefinition)
        dims = {d.name: d.partitions_def.get_partition_keys() for d in pd.partitions_defs}
        assert dims == {"layer": ["layers.1", "layers.3"], "latents": ["00000-00031", "00032-00063"]}
    assert defs.resolve_assets_def("corpus_tokens").partitions_def is None
    assert defs.resolve_assets_def("calibration").partitions_def is None  # keyed by explainer fingerprint instead
    assert defs.resolve_assets_def("analyses").partitions_def is None  # reads every partition
    # every asset check is a partitioned check of its own (the UI records each evaluation per partition); none is
    # hidden inside an asset, where a later partition's pass would cover an earlier one's failure
    from autointerp_assets.defs.checks import CHECKS

    assert len(CHECKS) == 7
    for check in CHECKS:
        (spec,) = check.check_specs
        assert spec.partitions_def is not None, spec.name
    for name in ("examples", "explanations", "scores"):
        assert not list(defs.resolve_assets_def(name).check_specs), name
    # one forward pass for many partitions: the caching asset takes a whole backfill in one run
    assert defs.resolve_assets_def("activations").backfill_policy == dg.BackfillPolicy.single_run()


def test_partition_ranges_follow_the_config():
    cfg = parse_config({**TINY, "latents": {"start": 100, "stop": 2148, "range_size": 1000}})
    assert cfg.latent_keys() == ["00100-01099", "01100-02099", "02100-02147"]
    assert cfg.latents.ranges()[-1] == (2100, 2147)


@pytest.mark.parametrize("patch, words", [
    ({"latents": {"start": 10, "stop": 5}}, ["latents", "stop"]),
    ({"sampler": {"example_ctx_len": 300}}, ["example_ctx_len", "ctx_len"]),
    ({"hookpoints": ["layers.1", "layers.1"]}, ["hookpoints", "duplicates"]),
    ({"corpus": {"n_tokens": 0}}, ["corpus.n_tokens"]),
    ({"explainer": {"llm": {"engine": "nope"}}}, ["explainer.llm.engine"]),
    ({"unknown_field": 1}, ["unknown_field"]),
    ({"scoring_extras": {"scorers": []}}, ["scoring_extras", "renamed to scoring"]),
])
def test_bad_config_is_one_line_naming_the_field(patch, words):
    with pytest.raises(ConfigError) as e:
        parse_config({**TINY, **patch})
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_missing_config_file_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="AUTOINTERP_CONFIG"):
        load_config(tmp_path / "nope.yaml")


def test_core_has_no_dagster_imports():
    core = Path(__file__).resolve().parents[1] / "autointerp_assets" / "core"
    offenders = []
    for path in core.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "dagster" or n.startswith("dagster.") or n.startswith("dagster_") for n in names):
                offenders.append(str(path))
    assert offenders == []


RAY = {"address": "http://127.0.0.1:8265", "forward_gpus": 1, "step_retries": 3, "env": ["MY_SETTING"]}


def test_without_a_ray_section_steps_run_in_the_runs_process():
    from autointerp_assets.defs import execution

    cfg = parse_config(TINY)
    assert execution.executor(cfg) is dg.in_process_executor
    assert execution.step_tags(execution.FORWARD, cfg) == {} and execution.retry_policy(cfg) is None


def test_a_ray_section_makes_each_step_a_ray_job_with_its_resources_code_and_retries():
    from autointerp_assets.defs import execution

    cfg = parse_config({**TINY, "ray": RAY})
    conf = execution.executor_config(cfg)
    assert conf["ray"]["address"] == "http://127.0.0.1:8265" and conf["retries"] == {"enabled": {}}
    assert conf["ray"]["env_vars"][0] == "AUTOINTERP_CONFIG" and conf["ray"]["env_vars"][-1] == "MY_SETTING"
    assert conf["ray"]["runtime_env"]["working_dir"] == str(Path(__file__).resolve().parents[1])
    assert "data/" in conf["ray"]["runtime_env"]["excludes"] and ".venv/" in conf["ray"]["runtime_env"]["excludes"]
    assert execution.executor(cfg).name == "ray"
    forward, client = (json.loads(execution.step_tags(k, cfg)[execution.RAY_TAG])
                       for k in (execution.FORWARD, execution.CLIENT))
    assert forward == {"num_cpus": 1.0, "num_gpus": 1} and client == {"num_cpus": 1.0}  # LLM steps: clients, no GPU
    assert execution.retry_policy(cfg).max_retries == 3
    shipped = parse_config({**TINY, "ray": {**RAY, "ship_code": False}})
    assert execution.executor_config(shipped)["ray"]["runtime_env"] == {}


def test_the_code_location_of_a_ray_config_runs_its_jobs_on_ray(tmp_path):
    import os
    import subprocess
    import sys

    from autointerp_assets_tests.conftest import write_config

    cfg = write_config(tmp_path / "project.yaml", {"ray": RAY})
    probe = ("import json\nfrom autointerp_assets.definitions import defs\n"
             "job = defs.resolve_job_def('latent_range_pipeline')\n"
             "tags = {a: json.loads(defs.resolve_assets_def(a).op.tags['dagster-ray/config'])\n"
             "        for a in ('activations', 'explanations')}\n"
             "print(json.dumps([job.executor_def.name, job.op_retry_policy.max_retries, tags]))\n")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], env={**os.environ, "AUTOINTERP_CONFIG": str(cfg)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1]) == [
        "ray", 3, {"activations": {"num_cpus": 1.0, "num_gpus": 1}, "explanations": {"num_cpus": 1.0}}]


@pytest.mark.parametrize("ray, words", [
    ({"address": "10.0.0.5:8265"}, ["ray.address", "http://<head>:8265"]),
    ({**RAY, "env": ["OPENAI_API_KEY"]}, ["OPENAI_API_KEY", "a secret", "Ray nodes' own environment"]),
    ({**RAY, "env": ["DAGSTER_PG_URL"]}, ["DAGSTER_PG_URL", "a secret"]),
    ({**RAY, "env": ["AWS_ACCESS_KEY_ID"]}, ["AWS_ACCESS_KEY_ID", "a secret"]),
    ({**RAY, "step_cpus": 0}, ["ray.step_cpus"]),
])
def test_a_bad_ray_section_is_one_line_with_the_fix(ray, words):
    with pytest.raises(ConfigError) as e:
        parse_config({**TINY, "ray": ray})
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
