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


def test_separators_inside_rows_are_never_encoded_or_trained_on(lm, sae_dir):
    """Rows of many short documents: every BOS / EOS position (not only position 0) is outside the data."""
    import numpy as np

    from autointerp_assets.core.separators import data_mask

    sae = load_sparse_coder(sae_dir, "layers.2")
    rng = np.random.default_rng(0)
    rows = rng.integers(300, 20000, size=(4, 40))
    rows[:, 0] = 0
    for r in range(4):  # a document boundary every 3-7 tokens, with both separator ids
        rows[r, np.cumsum(rng.integers(3, 8, size=12))[:-1].clip(max=39)] = rng.choice([0, 2])
    seps = (0, 2)
    data = data_mask(rows, seps)
    assert data.sum() < 4 * 39 - 20 and not data[:, 0].any()
    out = next(caching.cache_batches(lm, {"layers.2": sae}, [(7, rows)], 0, 576, "float32", seps))
    got = out[2][0]
    hit = rows[got.row_id - 7, got.pos]
    assert len(got.latent) > 0 and not np.isin(hit, seps).any() and got.pos.min() >= 1
    assert {(int(r), int(p)) for r, p in zip(got.row_id - 7, got.pos)} == \
        {(int(r), int(p)) for r, p in zip(*np.nonzero(data))}  # k=4 latents fire at every data position
    # the same positions encoded one by one give the same values (the mask only selects, never shifts)
    with caching.Residuals(lm, ["layers.2"]) as res:
        resid = res.run(torch.from_numpy(rows))["layers.2"]
    ref = caching.encode_batch(resid, sae, 7, 0, 576, "layers.2", data=data)
    assert np.array_equal(ref.pos, got.pos) and np.allclose(ref.value, got.value, atol=1e-5)
    train = caching.collect_training_residuals(lm, ["layers.2"], rows, 2, seps)["layers.2"]
    assert train.shape == (int(data.sum()), 576)
    assert torch.allclose(train, resid.reshape(-1, 576)[torch.from_numpy(np.flatnonzero(data))], atol=1e-5)


def test_bf16_encode_agrees_with_the_float32_reference_up_to_bf16_rounding(sae_dir):
    """caching's default encode (bf16 matmul, 512-token chunks, TopK on the bit patterns) vs plain float32."""
    sae = load_sparse_coder(sae_dir, "layers.2")
    torch.manual_seed(2)
    resid = torch.randn(3, 400, 576).bfloat16()  # 1197 tokens: three chunks, the last one short
    got = caching.encode_batch(resid, sae, 0, 0, 576, "layers.2", dtype=torch.bfloat16)
    x = resid[:, 1:, :].reshape(-1, 576).float()
    with torch.no_grad():
        pre = (x - sae.sae.b_dec) @ sae.sae.encoder.weight.T + sae.sae.encoder.bias
    kth = pre.topk(4, dim=-1).values[:, -1]
    tok = (got.row_id.astype(int) * 399 + got.pos.astype(int) - 1)
    ref = pre[torch.from_numpy(tok), torch.from_numpy(got.latent.astype(int))]
    scale = pre.abs().amax(-1)[torch.from_numpy(tok)]
    assert torch.allclose(torch.from_numpy(got.value), ref, rtol=1e-2, atol=1e-2 * float(scale.max()))
    # a latent picked in bf16 is a true top-4 latent, or ties the 4th within bf16 rounding
    assert bool((ref >= kth[torch.from_numpy(tok)] - 1e-2 * scale).all())
    fp32 = caching.encode_batch(resid, sae, 0, 0, 576, "layers.2")
    same = set(zip(got.row_id.tolist(), got.pos.tolist(), got.latent.tolist())) & \
        set(zip(fp32.row_id.tolist(), fp32.pos.tolist(), fp32.latent.tolist()))
    assert len(same) >= 0.97 * len(fp32.latent) and len(fp32.latent) > 3000


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


def test_activations_view_decodes_the_compact_cache_and_latent_stats_reads_it(tmp_path):
    import numpy as np
    import polars as pl

    from autointerp_assets.core import stages
    from autointerp_assets.core.config import load_config
    from autointerp_assets.core.stages.activations import fp16_bits
    from autointerp_assets.core.storage.schema import FP16_TO_REAL
    from autointerp_assets_tests.conftest import write_config

    ctx = stages.Context.of(load_config(write_config(tmp_path / "p.yaml", {"database": str(tmp_path / "w.duckdb")})))
    ctx_len = ctx.cfg.corpus.ctx_len
    vals = np.array([1.0, 2.0, 4.0, 0.3, 70000.0, 2.0**-20], dtype=np.float32)
    cache = pl.DataFrame({"cache_fp": "c", "layer": "layers.1", "latent": [0, 0, 0, 1, 5, 6],
                          "token": [1, ctx_len + 20, 5 * ctx_len + 100, 3, 7, 9],
                          "value_bits": fp16_bits(vals)}, schema_overrides={"value_bits": pl.UInt16})
    with ctx.wh.write() as con:
        ctx.wh.insert(con, "tokens", pl.DataFrame({"corpus_fp": ctx.corpus_fp(), "row_id": list(range(10)),
                                                   "token_ids": [[0] * ctx_len] * 10}))
        ctx.wh.insert(con, "activation_cache", cache)
        con.execute("INSERT INTO activation_partitions (layer, first_latent, last_latent, cache_fp, activations_fp, "
                    "ctx_len, n_nonzero) VALUES ('layers.1', 0, 3, 'c', 'activations-x', ?, 4)", [ctx_len])
    got = ctx.wh.query("SELECT latent, row_id, pos, value FROM activations ORDER BY ALL").rows()
    assert got == [(0, 0, 1, 1.0), (0, 1, 20, 2.0), (0, 5, 100, 4.0), (1, 0, 3, float(np.float16(0.3)))]
    # latents 5 and 6 exist in the cache but are outside every published partition: invisible
    decoded = ctx.wh.query(f"SELECT {FP16_TO_REAL.format(b='value_bits')} AS v FROM activation_cache "
                           "ORDER BY latent")["v"]
    assert decoded.to_list()[-2:] == [65504.0, float(np.float16(2.0**-20))]  # clamped max, subnormal
    out = stages.run_latent_stats(ctx, "layers.1", 0, 3)
    stats = ctx.wh.query("SELECT latent, n_firing, n_windows, max_activation, mean_activation, histogram, status "
                         "FROM latent_stats ORDER BY latent").rows()
    hist0 = [0] * 16
    hist0[4] = hist0[8] = hist0[15] = 1  # 1/4, 2/4 and 4/4 of the max in 16 bins
    assert stats[0] == (0, 3, 3, 4.0, pytest.approx(7 / 3), hist0, "too_rare")
    assert stats[1][:4] == (1, 1, 1, pytest.approx(0.3, abs=1e-3)) and stats[1][5] == [0] * 15 + [1]
    assert [s[6] for s in stats] == ["too_rare", "too_rare", "dead", "dead"] and stats[2][5] is None
    assert out["dead"] == [2, 3] and out["too_rare"] == [0, 1]
    # in chunks of one firing latent each (0, then 1-3): the same rows, activations_fp of the dead ones included
    every = "SELECT * FROM latent_stats ORDER BY latent"
    whole = ctx.wh.query(every)
    assert stages.run_latent_stats(ctx, "layers.1", 0, 3, chunk_activations=1) == out
    assert ctx.wh.query(every).equals(whole) and set(whole["activations_fp"]) == {"activations-x"}


def test_a_database_from_before_the_compact_cache_is_migrated(tmp_path):
    import duckdb

    from autointerp_assets.core.storage import Warehouse

    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("CREATE TABLE activation_cache (cache_fp VARCHAR, layer VARCHAR, latent INTEGER, row_id INTEGER, "
                "pos SMALLINT, value REAL)")
    con.execute("CREATE TABLE activations (layer VARCHAR, latent INTEGER, row_id INTEGER, pos SMALLINT, value REAL, "
                "activations_fp VARCHAR)")
    con.execute("CREATE TABLE cache_complete (cache_fp VARCHAR PRIMARY KEY, n_rows INTEGER, n_tokens BIGINT, "
                "n_nonzero BIGINT, seconds DOUBLE)")
    con.execute("INSERT INTO activations VALUES ('layers.1', 1, 1, 1, 1.0, 'a')")
    con.execute("INSERT INTO cache_complete VALUES ('c', 1, 1, 1, 1.0)")
    con.close()
    wh = Warehouse(tmp_path / "old.duckdb")
    kinds = dict(wh.query("SELECT table_name, table_type FROM information_schema.tables").rows())
    assert kinds["activations"] == "VIEW" and kinds["activation_cache"] == "BASE TABLE"
    assert wh.scalar("SELECT count(*) FROM cache_complete") == 0  # the old pass is recomputed on demand


def test_auto_dtype_is_bf16_only_where_bf16_matmuls_are_native():
    assert caching.resolve_dtype("float32") == "float32" and caching.resolve_dtype("bfloat16") == "bfloat16"
    assert caching.resolve_dtype(None) is None
    assert caching.resolve_dtype("auto") == ("bfloat16" if caching.native_bf16() else "float32")
