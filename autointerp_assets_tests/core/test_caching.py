"""Sparse coder loading, hookpoint resolution, early-stopped forward pass and sparse encoding."""

from pathlib import Path

import pytest
import torch

from autointerp_assets.core import caching
from autointerp_assets.core.sparse_coders import SparseCoderError, load_sparse_coder
from autointerp_assets.core.subject_model import ModelError, resolve_model

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def lm():
    model, _ = caching.load_subject_model(resolve_model("smollm2", DATA), "float32")
    return model


@pytest.fixture
def sae_dir(tmp_path):
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(0)
    sae = SparseCoder(576, SparseCoderConfig(expansion_factor=1, k=4))
    with torch.no_grad():
        sae.encoder.bias.normal_()
        sae.b_dec.normal_()
    sae.save_to_disk(tmp_path / "layers.2")
    return tmp_path


def test_unknown_hookpoint_lists_nearest_names(lm):
    with pytest.raises(caching.HookpointError, match=r"layers\.40.*nearest: \['model\.layers\.4"):
        caching.resolve_hookpoints(lm, ["layers.40"])


def test_forward_pass_stops_after_the_deepest_hook(lm):
    ran = []
    late = lm.model.layers[5].register_forward_hook(lambda *a: ran.append(5))
    try:
        with caching.Residuals(lm, ["layers.3", "layers.1"]) as res:
            out = res.run(torch.tensor([[0, 504, 2112, 314]]))
    finally:
        late.remove()
    assert ran == [] and set(out) == {"layers.1", "layers.3"}
    full = lm(input_ids=torch.tensor([[0, 504, 2112, 314]]), output_hidden_states=True).hidden_states
    assert torch.allclose(out["layers.3"], full[4], atol=1e-5)  # hidden_states[i+1] = output of layer i


def test_input_hooks_read_the_module_input_and_stop_before_it_runs(lm):
    ran = []
    h4 = lm.model.layers[4].register_forward_hook(lambda *a: ran.append(4))
    ids = torch.tensor([[0, 504, 2112, 314]])
    try:
        with caching.Residuals(lm, ["layers.1", "layers.4"], inputs=["layers.4"]) as res:
            out = res.run(ids)
    finally:
        h4.remove()
    assert ran == []  # the deepest hook reads layer 4's input: layer 4 itself never runs
    full = lm(input_ids=ids, output_hidden_states=True).hidden_states
    assert torch.allclose(out["layers.4"], full[4], atol=1e-5)  # input of layer 4 = output of layer 3
    assert torch.allclose(out["layers.1"], full[2], atol=1e-5)
    assert caching.hook_width(lm, ["layers.4", "layers.2.mlp.down_proj"], inputs=["layers.2.mlp.down_proj"]) == \
        {"layers.4": 576, "layers.2.mlp.down_proj": 1536}


def test_encode_matches_a_reference_topk(sae_dir):
    sae = load_sparse_coder(sae_dir, "layers.2")
    torch.manual_seed(1)
    resid = torch.randn(2, 6, 576)
    got = caching.encode_batch(resid, sae, row_start=10, latent_lo=0, latent_hi=576, hookpoint="layers.2")
    # reference: relu(W (x - b_dec) + b), keep the top 4 per token; BOS (pos 0) excluded
    x = resid[:, 1:, :].reshape(-1, 576)
    with torch.no_grad():
        pre = torch.relu((x - sae.sae.b_dec) @ sae.sae.encoder.weight.T + sae.sae.encoder.bias)
    vals, idx = pre.topk(4, dim=-1)
    ref = {(10 + t // 5, 1 + t % 5, int(i)): float(v) for t in range(10) for v, i in zip(vals[t], idx[t]) if v > 0}
    mine = {(int(r), int(p), int(l)): float(v) for r, p, l, v in zip(got.row_id, got.pos, got.latent, got.value)}
    assert mine.keys() == ref.keys()
    assert max(abs(mine[k] - ref[k]) for k in ref) < 1e-4
    assert got.pos.min() >= 1
    sub = caching.encode_batch(resid, sae, 10, 100, 200, "layers.2")  # a latent range keeps only its latents
    assert set(sub.latent.tolist()) == {l for (_, _, l) in ref if 100 <= l < 200}


def test_checkpoint_layout_errors(sae_dir, tmp_path):
    with pytest.raises(SparseCoderError, match=r"no sparse coder for hookpoint 'layers.7'.*nearest.*\['layers.2'\]"):
        load_sparse_coder(sae_dir, "layers.7")
    with pytest.raises(SparseCoderError, match="does not exist"):
        load_sparse_coder(tmp_path / "nowhere", "layers.2")


def test_model_path_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model("./no/such/model", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(tmp_path / "empty"), tmp_path)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M", tmp_path) == "HuggingFaceTB/SmolLM2-135M"
