"""Baseline explainers (no LLM): known answers on hand-made examples, then through the explanations stage on a
synthetic partition (top_tokens) and on a decoder that points along known tokens (logit_lens), registered
and fingerprinted like any explainer."""

from __future__ import annotations

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from autointerp_assets.core import explainer_baselines as eb
from autointerp_assets.core.config import load_config
from autointerp_assets.core.identity import explainer_fp, explainer_spec
from autointerp_assets.core.records import Example
from autointerp_assets.core.registry import load_registry
from autointerp_assets.core.stages.baseline_explanations import baseline_contexts
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.vocabulary import token_strings
from autointerp_assets.core.stages.explanations import run_explanations
from autointerp_assets.core.subject_model import resolve_model
from autointerp_assets_tests.conftest import ROOT, write_config
from autointerp_assets_tests.support.synthetic import record_sparse_coder, self_promoting, write_partition


def _ex(tokens, acts):
    return Example(0, tuple(tokens), tuple(acts), True, 0)


def test_top_tokens_name_the_mass_in_order_and_stop_at_the_covered_share():
    train = [_ex([" import", " os", "\n"], [6.0, 0, 1.0]), _ex(["import", " sys", " as"], [3.0, 0.5, 0]),
             _ex([" from", " x", " import"], [2.0, 0, 1.0])]
    # mass: import 10, from 2, newline 1, sys 0.5 (of 13.5): import alone is 74 %, + from 88.9 % >= 80 %
    assert [n for n, _ in eb.top_tokens(train, n=5, mass=0.8)] == ["import", "from"]
    assert eb.top_tokens_explanation(train, 5, 0.8) == 'The tokens "import" and "from".'
    assert eb.top_tokens_explanation(train, 5, 0.97) == 'The tokens "import", "from", "newline" and "sys".'
    assert eb.top_tokens_explanation(train, 1, 0.8) == 'The token "import".'
    assert eb.top_tokens_explanation([_ex([" a"], [0.0])]) is None  # nothing fires: no explanation
    assert eb.logit_lens_explanation([" (", "(", " [", "{"], 5) == 'Text where the next token is likely "(", "[" or "{".'


def test_top_tokens_through_the_stage_and_the_registry(tmp_path):
    cfg = load_config(write_config(tmp_path / "p.yaml", {"database": str(tmp_path / "b.duckdb"),
                                                         "explainer": {"kind": "top_tokens"}}))
    ctx = Context.of(cfg)
    write_partition(ctx.wh, "layers.1", [3, 4, 5])
    out = run_explanations(ctx, None, "layers.1", 0, 31)  # no client: a baseline sends no request
    assert out["status"] == {"ok": 3} and out["explainer_kind"] == "top_tokens" and out["llm_calls"] == 0
    rows = ctx.wh.query("SELECT latent, explanation, explainer_fp, prompt_tokens FROM explanations ORDER BY latent")
    vocab = token_strings(resolve_model("smollm2", ROOT / "data"))
    for r in rows.iter_rows(named=True):
        fired = ctx.wh.query("SELECT token_ids, acts FROM examples WHERE layer = 'layers.1' AND latent = ? "
                             "AND split = 'train'", [r["latent"]])
        exs = [_ex([vocab[t] for t in ids], acts) for ids, acts in fired.iter_rows()]
        assert r["explanation"] == eb.top_tokens_explanation(exs, 5, 0.8) and r["prompt_tokens"] == 0
    assert ctx.wh.scalar("SELECT count(*) FROM llm_calls") == 0
    spec = explainer_spec(cfg, ctx.workdir)
    assert "llm" not in spec and spec["kind"] == "top_tokens"
    # the same baseline declared in a registry, or configured beside an LLM explainer, has the same fingerprint
    (tmp_path / "explainers.yaml").write_text("explainers:\n  free: {kind: top_tokens}\n")
    llm_cfg = load_config(write_config(tmp_path / "q.yaml", {"database": str(tmp_path / "b.duckdb")}))
    reg = load_registry(llm_cfg, tmp_path / "explainers.yaml")
    fp = rows["explainer_fp"][0]
    assert explainer_fp(reg.apply(llm_cfg, "free")) == fp
    assert {b.cfg.explainer.kind: explainer_fp(b.cfg) for b in baseline_contexts(Context.of(llm_cfg))}["top_tokens"] == fp
    assert "intruder" not in baseline_contexts(Context.of(llm_cfg))[0].cfg.scoring.scorers


def test_logit_lens_names_the_tokens_the_decoder_row_promotes(tmp_path):
    model = resolve_model("smollm2", ROOT / "data")
    with safe_open(f"{model}/model.safetensors", "pt") as st:
        unembed, norm = st.get_tensor("model.embed_tokens.weight").float(), st.get_tensor("model.norm.weight").float()
    vocab = token_strings(model)
    targets = dict(zip((8, 9), self_promoting(unembed, 2, 2000, 991, keep=lambda t: vocab[t].strip().isalpha())))
    w_dec = torch.randn(16, unembed.shape[1]) * 0.01
    for lat, tok in targets.items():
        w_dec[lat] = unembed[tok] / norm
    sae_dir = tmp_path / "sae" / "layers.1"
    sae_dir.mkdir(parents=True)
    save_file({"W_dec": w_dec.contiguous()}, str(sae_dir / "sae.safetensors"))
    cfg = load_config(write_config(tmp_path / "p.yaml", {"database": str(tmp_path / "l.duckdb"),
                                                         "explainer": {"kind": "logit_lens", "n_baseline_tokens": 3}}))
    ctx = Context.of(cfg)
    write_partition(ctx.wh, "layers.1", list(targets))
    record_sparse_coder(ctx.wh, "layers.1", sae_dir, w_dec)
    out = run_explanations(ctx, None, "layers.1", 8, 15)
    assert out["status"] == {"ok": 2}
    got = dict(ctx.wh.query("SELECT latent, explanation FROM explanations").iter_rows())
    for lat, tok in targets.items():
        assert got[lat].startswith(f'Text where the next token is likely "{vocab[tok].strip()}"'), got[lat]
    # without decoder weights the baseline is recorded as unavailable, with why, and never scored
    (sae_dir / "sae.safetensors").unlink()
    out = run_explanations(ctx, None, "layers.1", 8, 15)
    assert out["status"] == {"unavailable": 2}
    assert "no decoder weights" in ctx.wh.scalar("SELECT any_value(error) FROM explanations")
