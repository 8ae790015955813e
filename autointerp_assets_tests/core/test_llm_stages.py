"""The logit-aware explainer end to end on the real SmolLM2 unembedding: the promoted tokens of a latent
whose decoder row points along a token's unembedding reach its explainer prompt (the LLM side is the
fixed-answer local server: what is checked here is the prompt)."""

from __future__ import annotations

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from autointerp_assets.core.config import load_config
from autointerp_assets.core.llm import make_client
from autointerp_assets.core.stages.context import Context
from autointerp_assets.core.vocabulary import token_strings
from autointerp_assets.core.stages.explanations import logit_tokens, run_explanations
from autointerp_assets.core.subject_model import resolve_model
from autointerp_assets_tests.conftest import ROOT, write_config
from autointerp_assets_tests.support.fake_openai import FakeOpenAIServer
from autointerp_assets_tests.support.synthetic import record_sparse_coder, self_promoting, write_partition


def test_logit_explainer_lists_the_tokens_the_decoder_row_promotes(tmp_root):
    model = resolve_model("smollm2", ROOT / "data")
    with safe_open(f"{model}/model.safetensors", "pt") as st:
        unembed, norm = st.get_tensor("model.embed_tokens.weight").float(), st.get_tensor("model.norm.weight").float()
    # latents 8..10 of a 16-latent SAE (the partition 8-15 must read its own rows of W_dec)
    TARGETS = dict(zip((8, 9, 10), self_promoting(unembed, 3)))
    w_dec = torch.randn(16, unembed.shape[1]) * 0.01
    for lat, tok in TARGETS.items():
        w_dec[lat] = unembed[tok] / norm  # after the final norm's gain, exactly the token's unembedding
    sae_dir = tmp_root / "logit-sae" / "layers.1"
    sae_dir.mkdir(parents=True)
    save_file({"W_dec": w_dec.contiguous()}, str(sae_dir / "sae.safetensors"))

    with FakeOpenAIServer() as srv:
        llm = {"engine": "openai", "model": "smollm2", "base_url": srv.url, "api_key_env": "AUTOINTERP_UNSET"}
        cfg = load_config(write_config(tmp_root / "logit.yaml", {"database": str(tmp_root / "logit.duckdb"),
                                                                 "explainer": {"llm": llm, "kind": "logit",
                                                                               "n_logit_tokens": 5}}))
        ctx = Context.of(cfg)
        write_partition(ctx.wh, "layers.1", list(TARGETS))
        record_sparse_coder(ctx.wh, "layers.1", sae_dir, w_dec)
        vocab = token_strings(model)
        promoted = logit_tokens(ctx, "layers.1", 8, 15, 5)
        assert sorted(promoted) == list(range(8, 16)) and all(len(v) == 5 for v in promoted.values())
        for lat, tok in TARGETS.items():
            assert promoted[lat][0] == vocab[tok], (vocab[tok], promoted[lat])
        out = run_explanations(ctx, make_client(cfg.explainer.llm, str(ctx.workdir)), "layers.1", 8, 15)
    assert out["status"] == {"ok": 3} and out["explainer_kind"] == "logit"
    prompts = [b["messages"][-2]["content"] for b in srv.bodies]  # last user message (assistant prefill follows)
    for lat, tok in TARGETS.items():
        line = f'"{vocab[tok].strip()}"'
        assert sum(line in p and "Tokens this latent promotes:" in p for p in prompts) >= 1, line
