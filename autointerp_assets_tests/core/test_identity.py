"""Model / LLM identities that fingerprints hash: anything that changes tokens or prompts changes them."""

from __future__ import annotations

import json

from autointerp_assets.core.config import LLMConfig
from autointerp_assets.core.fingerprint import fingerprint
from autointerp_assets.core.identity import _dir_revision, llm_identity, model_identity


def _model_dir(root, template: str | None = "{{ messages }}"):
    d = root / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    (d / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "b": 1}}}))
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": template} if template else {}))
    (d / "model.safetensors").write_bytes(b"\0" * 64)
    return d


def _llm(d) -> dict:
    _dir_revision.cache_clear()
    return llm_identity(LLMConfig(engine="vllm", model=str(d)), d.parent)


def test_tokenizer_and_template_changes_change_the_explainer_fingerprint(tmp_path):
    d = _model_dir(tmp_path)
    before = _llm(d)
    assert before["chat_template"] == "model" and before == _llm(d)  # deterministic
    # a new vocabulary (same weights and config): other tokens, so another revision and fingerprint
    (d / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "c": 1}}}))
    after = _llm(d)
    assert after["revision"] != before["revision"]
    assert fingerprint("explainer", {"llm": after}) != fingerprint("explainer", {"llm": before})
    _dir_revision.cache_clear()
    assert model_identity(str(d), tmp_path)["revision"] == after["revision"]  # the corpus' tokenizer identity too
    # how the files were loaded is not what they tokenize: two conversions of one model agree
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}", "local_files_only": True,
                                                         "name_or_path": "/elsewhere/model"}))
    assert _llm(d)["revision"] == after["revision"]
    # no chat template: our fallback transcript is named by its digest
    (d / "tokenizer_config.json").write_text("{}")
    fallback = _llm(d)
    assert fallback["chat_template"].startswith("fallback-") and fallback["revision"] != after["revision"]
    # a chat_template.jinja file counts as the model's own template
    (d / "chat_template.jinja").write_text("{{ messages }}")
    assert _llm(d)["chat_template"] == "model"


def test_engine_dtype_is_part_of_the_llm_identity(tmp_path):
    """Greedy text differs between bf16 and float32, so the resolved dtype names the engine: explanations made
    on an AVX2 machine (auto -> float32) never share a fingerprint with AMX ones (auto -> bfloat16)."""
    from autointerp_assets.core.caching import resolve_dtype
    from autointerp_assets.core.identity import engine_label

    d = _model_dir(tmp_path)
    ids = {dt: llm_identity(LLMConfig(engine="vllm", model=str(d), dtype=dt), d.parent)
           for dt in ("auto", "bfloat16", "float32")}
    assert ids["bfloat16"]["dtype"] == "bfloat16" and ids["float32"]["dtype"] == "float32"
    assert ids["auto"] == ids[resolve_dtype("auto")]  # auto is named by what it resolved to
    assert fingerprint("explainer", {"llm": ids["bfloat16"]}) != fingerprint("explainer", {"llm": ids["float32"]})
    assert engine_label(ids["float32"]) == f"vllm {d} float32"
    server = llm_identity(LLMConfig(engine="openai", model="m", base_url="http://127.0.0.1:1/v1"), d.parent)
    assert "dtype" not in server and engine_label(server) == "openai m"  # a server's dtype is the server's
