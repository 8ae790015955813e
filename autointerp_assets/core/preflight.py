"""Checks before any heavy work: every input a run will need, each problem in one line with the fix.

`autointerp run` calls :func:`check` right after loading the config (which already validated every value,
e.g. ``base_url`` for an ``openai`` engine, ``corpus.n_tokens >= corpus.ctx_len``,
``sampler.n_non_activating >= 1``) and before the first asset: model and sparse-coder files readable and
complete, Hugging Face names resolvable while the Hub is offline, the corpus present and decodable, the LLM
servers reachable with their keys and models, the warehouse readable. What can only be found later (a
corpus line deep in a large file) fails its stage with one line naming the file and line, if the stage reads
that far (it stops once ``corpus.n_tokens`` are packed, after filling its shuffle buffer).
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

from .config import LLMConfig, ProjectConfig
from .errors import InputError

_SAMPLE_BYTES = 4 << 20  # corpus files: the first 4 MiB are decoded here; the rest by the corpus stage


def hub_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_safetensors(path: Path) -> None:
    """The file's header parses and the file is as long as the header says (a truncated copy is not)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{path} is truncated ({size} bytes, no safetensors header): copy or download it again")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > 100 << 20:
                raise InputError(f"{path} is truncated or not a safetensors file (header of {n} bytes in a {size}-byte "
                                 "file): copy or download it again")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path} is not a readable safetensors file ({type(e).__name__}: {str(e)[:120]}): copy or "
                         "download it again") from None
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise InputError(f"{path} is truncated: {size:,} bytes, its header needs {8 + n + end:,}: copy or download "
                         "it again")


def check_model(name: str, field: str, workdir: Path) -> None:
    """A model name the run will load: an offline alias's package, a complete local dir, or a hub name that can
    be resolved (cached, when the Hub is offline)."""
    from .subject_model import OFFLINE_ALIASES, _require

    if name in OFFLINE_ALIASES:
        alias = OFFLINE_ALIASES[name]
        if not (Path(workdir) / "models" / alias.label / "config.json").exists():
            try:
                _require(alias)
            except ValueError as e:
                raise InputError(f"{field} {name!r}: {e}") from None
        return
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise InputError(f"{field}: model dir {p} has no config.json: point at a Hugging Face model directory")
        try:
            json.loads((p / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{field}: {p / 'config.json'} is not valid JSON ({e}): restore the file") from None
        for w in sorted(p.glob("*.safetensors")):
            check_safetensors(w)
        return
    if name.startswith((".", "/", "~")):
        raise InputError(f"{field}: model path {name} does not exist: fix the path or use a Hugging Face name")
    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise InputError(f"{field} {name!r} is a Hugging Face name, but the Hub is offline (HF_HUB_OFFLINE=1) and "
                             f"it is not in the local cache: download it where the Hub is reachable "
                             f"(huggingface-cli download {name}) or point {field} at a local directory")


def check_sparse_coders(cfg: ProjectConfig) -> None:
    from .sparse_coders.loading import FORMATS, checkpoint_dir, detect_format

    src = cfg.sae.source
    if src == "train":
        return
    if src.startswith("hf:"):
        if hub_offline():
            raise InputError(f"sae.source {src!r} is on the Hugging Face Hub, which is offline (HF_HUB_OFFLINE=1): "
                             "download the hookpoints' sub-directories and set sae.source to that directory")
        return
    root = cfg.resolve(src)
    if not root.is_dir():
        raise InputError(f"sae.source: sparse coder dir {root} does not exist: fix sae.source (a local dir, or "
                         "hf:<repo>)")
    for h in cfg.hookpoints:
        try:
            d = checkpoint_dir(root, h, cfg.sae.paths)
            fmt = detect_format(d) if cfg.sae.format == "auto" else cfg.sae.format
        except ValueError as e:
            raise InputError(str(e)) from None
        for f in FORMATS[fmt].FILES:
            p = d / f
            if not p.is_file():
                raise InputError(f"sae.format is {fmt} but {d} lacks {f}: fix sae.format (or auto) or the checkpoint")
            if f.endswith(".safetensors"):
                check_safetensors(p)
            elif f.endswith(".json"):
                try:
                    json.loads(p.read_text())
                except (OSError, ValueError) as e:
                    raise InputError(f"{p} is not valid JSON ({e}): restore the file") from None
            elif f.endswith(".npz"):
                try:
                    with zipfile.ZipFile(p) as z:
                        z.namelist()
                except (OSError, zipfile.BadZipFile) as e:
                    raise InputError(f"{p} is truncated or not an .npz file ({e}): copy or download it again") from None


def check_corpus(cfg: ProjectConfig) -> None:
    from .corpus import _TEXT_SUFFIXES, CorpusError, decode_line, jsonl_text

    src = cfg.corpus.source
    if src == "cpython":
        return
    if src.startswith("hf:"):
        if hub_offline():
            raise InputError(f"corpus.source {src!r} streams from the Hugging Face Hub, which is offline "
                             "(HF_HUB_OFFLINE=1): use a local .txt / .jsonl / .parquet file or 'cpython'")
        return
    path = Path(src).expanduser()
    path = path if path.is_absolute() else cfg.root / path
    if not path.exists():
        raise InputError(f"corpus.source {src!r} is neither 'cpython', 'hf:<name>' nor an existing path ({path}): fix it")
    files = sorted(p for p in path.rglob("*") if p.suffix in _TEXT_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise InputError(f"corpus directory {path} holds no .txt/.md/.rst/.jsonl/.parquet files")
    for f in files:
        if f.suffix == ".parquet":
            try:
                import pyarrow.parquet as pq

                names = pq.read_schema(f).names
            except Exception as e:
                raise InputError(f"corpus file {f} is not a readable parquet file ({type(e).__name__}): re-export it or "
                                 "remove it") from None
            if cfg.corpus.text_column not in names:
                raise InputError(f"{f} has no column '{cfg.corpus.text_column}' (has {names}): set corpus.text_column")
            continue
        with f.open("rb") as fh:
            data = fh.read(_SAMPLE_BYTES)
        if len(data) == _SAMPLE_BYTES:
            data = data[: data.rfind(b"\n") + 1]  # whole lines only
        try:
            for i, raw in enumerate(data.splitlines(keepends=True), 1):
                line = decode_line(f, i, raw)
                if f.suffix == ".jsonl" and line.strip():
                    jsonl_text(f, i, line, cfg.corpus.text_column)
        except CorpusError as e:
            raise InputError(str(e)) from None


def check_llm(llm: LLMConfig, field: str, workdir: Path) -> None:
    from .llm.server_errors import LLMServerError, probe

    if llm.engine == "vllm":
        check_model(llm.model, f"{field}.model", workdir)
        return
    try:
        probe(llm.base_url, llm.model, llm.api_key_env, timeout_s=min(10.0, llm.timeout_s))
    except LLMServerError as e:
        raise InputError(f"{field}: {e}") from None


def check_warehouse(cfg: ProjectConfig) -> None:
    from .storage import Warehouse

    wh = Warehouse.of(cfg)
    if wh.exists():
        wh.init()  # a damaged file fails here, in one line (StorageError)


def check(cfg: ProjectConfig, servers: bool = True) -> None:
    """Every input of a run, cheapest first; the first problem is raised as one line."""
    workdir = cfg.resolve(cfg.workdir)
    check_model(cfg.subject_model, "subject_model", workdir)
    check_corpus(cfg)
    check_sparse_coders(cfg)
    check_warehouse(cfg)
    if servers:
        check_llm(cfg.explainer.llm, "explainer.llm", workdir)
        if cfg.scorer.llm is not None and cfg.scorer.llm != cfg.explainer.llm:
            check_llm(cfg.scorer.llm, "scorer.llm", workdir)
