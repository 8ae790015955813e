"""Model / LLM identities that fingerprints hash: anything that changes tokens or prompts changes them."""

from __future__ import annotations

import json

from autointerp_assets.core.config import LLMConfig
from autointerp_assets.core.fingerprint import fingerprint
from autointerp_assets.core.stages.context import _dir_revision, llm_identity, model_identity


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
