"""Every sparse-coder format: tiny checkpoints written the way each format writes them, loaded through
the pipeline's loader, encodes checked against a plain reference of the architecture; bad input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from autointerp_assets.core import caching
from autointerp_assets.core.config import load_config
from autointerp_assets.core.sparse_coders import SparseCoderError, detect_format, load_dir, load_sparse_coder
from autointerp_assets.core.stages.sparse_coders import check_width
from autointerp_assets_tests.conftest import write_config

D_IN, D_SAE = 16, 48


def sparse(values: torch.Tensor, indices: torch.Tensor) -> dict[tuple[int, int], float]:
    return {(n, int(i)): float(v) for n in range(values.shape[0])
            for v, i in zip(values[n], indices[n]) if v > 0}


def dense(acts: torch.Tensor) -> dict[tuple[int, int], float]:
    return {(int(n), int(i)): float(acts[n, i]) for n, i in acts.nonzero().tolist()}


def assert_same(got: dict, ref: dict):
    assert got.keys() == ref.keys() and len(ref) > 0
    assert max(abs(got[k] - ref[k]) for k in ref) < 1e-4


def topk_dense(pre: torch.Tensor, k: int) -> torch.Tensor:
    vals, idx = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, idx, vals.relu())


@pytest.fixture
def x():
    return torch.randn(20, D_IN, generator=torch.Generator().manual_seed(3))


def weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(D_IN, D_SAE, generator=g) / 4, "b_enc": torch.randn(D_SAE, generator=g) / 4,
            "W_dec": torch.randn(D_SAE, D_IN, generator=g), "b_dec": torch.randn(D_IN, generator=g) / 4,
            "threshold": torch.rand(D_SAE, generator=g) / 2}


def write_saelens(d: Path, arch: str, hook: str = "blocks.2.hook_resid_post", v5: bool = False, **extra) -> dict:
    """cfg.json + sae_weights.safetensors with SAELens' field names (v6 layout, or v5's flat one)."""
    w = weights()
    d.mkdir(parents=True)
    keep = ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if arch == "jumprelu" else [])
    save_file({k: w[k].contiguous() for k in keep}, str(d / "sae_weights.safetensors"))
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
           "normalize_activations": "none", "reshape_activations": "none", "architecture": arch}
    if v5:
        cfg.update(hook_name=hook, hook_layer=2, model_name="tiny")
    else:
        cfg["metadata"] = {"hook_name": hook, "model_name": "tiny"}
    cfg.update(extra)
    (d / "cfg.json").write_text(json.dumps(cfg))
    return w


def test_sparsify_sae_and_transcoder(tmp_path, x):
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(0)
    for name, transcode in (("layers.1", False), ("layers.2.mlp", True)):
        sae = SparseCoder(D_IN, SparseCoderConfig(num_latents=D_SAE, k=5, transcode=transcode,
                                                  skip_connection=transcode))
        with torch.no_grad():
            sae.encoder.bias.normal_()
            sae.b_dec.normal_()
        sae.save_to_disk(tmp_path / name)
        coder = load_sparse_coder(tmp_path, name)  # format auto
        assert (coder.format, coder.architecture, coder.k, coder.hook_input) == ("sparsify", "topk", 5, transcode)
        # reference: SAEs subtract b_dec before the encoder; transcoders encode the module input as is
        inp = x if transcode else x - sae.b_dec
        with torch.no_grad():
            pre = inp @ sae.encoder.weight.T + sae.encoder.bias
        assert_same(sparse(*coder.encode(x)), dense(topk_dense(pre, 5)))


@pytest.mark.parametrize("arch,v5", [("standard", False), ("topk", False), ("topk", True), ("jumprelu", False)])
def test_saelens_architectures(tmp_path, x, arch, v5):
    extra = {"k": 6} if arch == "topk" and not v5 else {}
    if v5 and arch == "topk":  # v5: 'standard' architecture with a topk activation function
        extra = {"activation_fn_str": "topk", "activation_fn_kwargs": {"k": 6}}
    w = write_saelens(tmp_path / "blocks.2.hook_resid_post", "standard" if v5 else arch, v5=v5, **extra)
    coder = load_dir(tmp_path / "blocks.2.hook_resid_post")
    assert coder.format == "saelens" and not coder.hook_input and coder.d_in == D_IN and coder.num_latents == D_SAE
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    ref = {"standard": pre.relu(), "topk": topk_dense(pre, 6),
           "jumprelu": pre.relu() * (pre > w["threshold"])}[arch]
    assert_same(sparse(*coder.encode(x)), dense(ref))


def test_saelens_resid_pre_reads_the_module_input_and_rescales(tmp_path, x):
    w = write_saelens(tmp_path / "pre", "standard", hook="blocks.3.hook_resid_pre",
                      normalize_activations="constant_norm_rescale", apply_b_dec_to_input=False)
    coder = load_dir(tmp_path / "pre", "saelens")
    assert coder.hook_input
    xs = x * (D_IN ** 0.5) / x.norm(dim=-1, keepdim=True)
    assert_same(sparse(*coder.encode(x)), dense((xs @ w["W_enc"] + w["b_enc"]).relu()))


def test_gemmascope_jumprelu(tmp_path, x):
    w = weights(1)
    d = tmp_path / "layer_2" / "width_16k" / "average_l0_10"
    d.mkdir(parents=True)
    np.savez(d / "params.npz", **{k: v.numpy() for k, v in w.items()})
    coder = load_sparse_coder(tmp_path, "layers.2", paths={"layers.2": "layer_2/width_16k/average_l0_10"})
    assert (coder.format, coder.architecture, coder.hook_input) == ("gemmascope", "jumprelu", False)
    pre = x @ w["W_enc"] + w["b_enc"]  # Gemma Scope: no b_dec subtraction
    assert_same(sparse(*coder.encode(x)), dense(pre.relu() * (pre > w["threshold"])))


def test_our_trained_topk_loads_like_a_checkpoint(tmp_path, x):
    from autointerp_assets.core.config import SaeConfig
    from autointerp_assets.core.sparse_coders import train_topk_sae

    data = torch.randn(600, D_IN, generator=torch.Generator().manual_seed(5))
    sae, stats = train_topk_sae(data, SaeConfig(expansion_factor=3, k=4, epochs=1, batch_size=128), log=lambda m: None)
    assert 0 < stats["fvu"] < 1.5
    sae.save_to_disk(tmp_path / "layers.0")
    coder = load_sparse_coder(tmp_path, "layers.0", "sparsify")
    with torch.no_grad():
        pre = (x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias
    assert_same(sparse(*coder.encode(x)), dense(topk_dense(pre, 4)))


def test_only_the_requested_hookpoint_is_read(tmp_path, x):
    write_saelens(tmp_path / "layers.1", "standard")
    (tmp_path / "layers.9").mkdir()
    (tmp_path / "layers.9" / "sae_weights.safetensors").write_bytes(b"garbage")  # never opened
    (tmp_path / "layers.9" / "cfg.json").write_text("{not json")
    assert load_sparse_coder(tmp_path, "layers.1").num_latents == D_SAE


def test_layout_errors(tmp_path):
    write_saelens(tmp_path / "layers.1", "standard")
    with pytest.raises(SparseCoderError, match=r"no sparse coder for hookpoint 'layers.11'.*nearest.*'layers.1'"):
        load_sparse_coder(tmp_path, "layers.11")
    with pytest.raises(SparseCoderError, match=r"sae.format is sparsify but .* lacks \['sae.safetensors'\]"):
        load_sparse_coder(tmp_path, "layers.1", "sparsify")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(SparseCoderError, match=r"holds no sparse coder .*found \['notes.txt'\]"):
        detect_format(tmp_path / "empty")
    with pytest.raises(SparseCoderError, match="does not exist"):
        load_sparse_coder(tmp_path / "nowhere", "layers.1")
    bad = tmp_path / "gs"
    bad.mkdir()
    np.savez(bad / "params.npz", W_enc=np.zeros((4, 8), np.float32))
    with pytest.raises(SparseCoderError, match=r"lacks \['b_enc', 'threshold'\].*not a Gemma Scope"):
        load_dir(bad)
    write_saelens(tmp_path / "gated", "gated")
    with pytest.raises(SparseCoderError, match="architecture 'gated' is not supported"):
        load_dir(tmp_path / "gated")
    write_saelens(tmp_path / "nothr", "jumprelu")
    save_file({k: v.contiguous() for k, v in weights().items() if k != "threshold"},
              str(tmp_path / "nothr" / "sae_weights.safetensors"))
    with pytest.raises(SparseCoderError, match=r"lacks \['threshold'\] for a SAELens jumprelu SAE"):
        load_dir(tmp_path / "nothr")


def test_width_and_hookpoint_errors_before_heavy_work(tmp_path):
    from autointerp_assets.core import stages
    from autointerp_assets.core.subject_model import resolve_model

    skeleton = caching.meta_model(resolve_model("smollm2", Path(__file__).resolve().parents[2] / "data"))
    assert caching.expected_width(skeleton, "layers.1", False) == 576
    assert caching.expected_width(skeleton, "layers.1.mlp.down_proj", True) == 1536
    write_saelens(tmp_path / "saes" / "layers.1", "standard")  # d_in 16, SmolLM2 is 576 wide
    coder = load_dir(tmp_path / "saes" / "layers.1")
    with pytest.raises(SparseCoderError, match="expects d_in=16 but the model's output there has width 576"):
        check_width("layers.1", coder, 576)
    cfg = write_config(tmp_path / "p.yaml", {"database": str(tmp_path / "p.duckdb"), "hookpoints": ["layers.1"],
                                             "sae": {"source": str(tmp_path / "saes")}})
    with pytest.raises(SparseCoderError, match="layers.1 expects d_in=16 .* width 576"):
        stages.run_sparse_coders(stages.Context.of(load_config(cfg)))
    cfg = write_config(tmp_path / "q.yaml", {"database": str(tmp_path / "p.duckdb"), "hookpoints": ["layer.1"],
                                             "sae": {"source": str(tmp_path / "saes")}})
    with pytest.raises(caching.HookpointError, match=r"'layer.1' is not a module .*nearest: \['model.layers.1'"):
        stages.run_sparse_coders(stages.Context.of(load_config(cfg)))
    cfg = write_config(tmp_path / "r.yaml", {"database": str(tmp_path / "p.duckdb"), "hookpoints": ["layers.1"],
                                             "sae": {"source": str(tmp_path / "saes"), "paths": {"layers.2": "x"}}})
    with pytest.raises(SparseCoderError, match=r"sae.paths names \['layers.2'\], which are not hookpoints"):
        stages.run_sparse_coders(stages.Context.of(load_config(cfg)))
