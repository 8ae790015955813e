"""The code location loads and exposes layer × latents partitions derived from the config."""

import ast
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
