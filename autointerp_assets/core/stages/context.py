"""What every stage needs (config, warehouse, workdir, log) and the identities fingerprints are built from."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from .. import corpus, explainer_baselines, explainers, scorers
from ..caching import resolve_dtype
from ..config import LLMConfig, ProjectConfig
from ..fingerprint import file_digest, fingerprint
from ..llm.base import FALLBACK_CHAT_TEMPLATE, FALLBACK_STOP
from ..redaction import redact_url
from ..storage import Warehouse
from ..subject_model import resolve_model

log = logging.getLogger(__name__)
Log = Callable[[str], None]


# what changes a model's tokens or prompts besides its weights: part of its revision
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "chat_template.jinja")


# tokenizer_config.json keys about how the files were loaded, not what they tokenize (they differ between
# two conversions of the same model, e.g. with and without HF_HUB_OFFLINE)
LOADING_KEYS = frozenset({"local_files_only", "name_or_path", "_commit_hash", "cache_dir", "token", "revision",
                          "trust_remote_code", "force_download", "subfolder"})


def _file_revision(path: Path) -> str:
    if path.name == "tokenizer_config.json":
        cfg = {k: v for k, v in json.loads(path.read_text()).items() if k not in LOADING_KEYS}
        return fingerprint("file", cfg)[-16:]
    return file_digest(path, limit=None)


@lru_cache(maxsize=16)
def _dir_revision(path: str) -> str:
    p = Path(path)
    parts = [file_digest(p / "config.json", limit=None)]
    parts += [_file_revision(p / f) for f in TOKENIZER_FILES if (p / f).exists()]
    for w in sorted(p.glob("*.safetensors")):
        parts.append(file_digest(w))
    return ":".join(parts)


def _chat_template(path: str) -> str:
    """'model' when the dir ships a chat template, else our fallback transcript's digest (a change to it
    must change explainer / scorer fingerprints like any prompt change)."""
    p = Path(path)
    cfg = p / "tokenizer_config.json"
    if (p / "chat_template.jinja").exists() or (cfg.exists() and json.loads(cfg.read_text()).get("chat_template")):
        return "model"
    return "fallback-" + fingerprint("template", {"template": FALLBACK_CHAT_TEMPLATE, "stop": FALLBACK_STOP})[-8:]


def model_identity(name: str, workdir: Path) -> dict:
    """Name + revision (digest of the local files) without loading the model."""
    resolved = resolve_model(name, workdir)
    rev = _dir_revision(resolved) if Path(resolved).is_dir() else "hub"
    return {"name": name, "revision": rev}


def llm_identity(cfg: LLMConfig, workdir: Path) -> dict:
    ident = {"engine": cfg.engine, "model": cfg.model}
    if cfg.engine == "vllm":
        ident["revision"] = model_identity(cfg.model, workdir)["revision"]
        resolved = resolve_model(cfg.model, workdir)  # cheap once converted; model_identity resolved it first
        if Path(resolved).is_dir():
            ident["chat_template"] = _chat_template(resolved)
        ident["dtype"] = resolve_dtype(cfg.dtype)  # greedy text differs between bf16 and float32
    else:
        ident["base_url"] = redact_url(cfg.base_url)  # a key written into the URL never reaches a fingerprint
    return ident


def engine_label(llm: dict) -> str:
    """An LLM identity (``llm_identity``) in a few words for people: engine, model and, in-process, dtype."""
    return " ".join(str(llm[k]) for k in ("engine", "model", "dtype") if llm.get(k))


def corpus_spec(cfg: ProjectConfig, workdir: Path) -> dict:
    spec = {"corpus": cfg.corpus.model_dump(), "tokenizer": model_identity(cfg.subject_model, workdir)}
    if corpus.is_local(cfg.corpus.source):  # how local files are read decides the rows too
        spec["reader"] = corpus.LOCAL_READER
    return spec


BASELINE_ONLY = {"n_baseline_tokens", "baseline_mass"}  # settings LLM explainers ignore (not in their fingerprint)


def explainer_spec(cfg: ProjectConfig, workdir: Path) -> dict:
    e = cfg.explainer
    if explainer_baselines.is_baseline(e.kind):  # no LLM: what makes its explanations is the rule and its settings
        return {"kind": e.kind, "version": explainer_baselines.BASELINE_VERSION[e.kind],
                "settings": {"n_baseline_tokens": e.n_baseline_tokens, "baseline_mass": e.baseline_mass}}
    output = e.kind in ("token_change", "input_output")  # output-centric: they read the steering rows
    # settings added later are left out at their defaults, so earlier explainers keep their fingerprints
    later = ({"max_latents"} if e.max_latents is None else set()) | (set() if output else {"n_output_tokens"})
    spec = {"llm": llm_identity(e.llm, workdir), "settings": e.model_dump(exclude={"llm", *BASELINE_ONLY} | later),
            "prompt_version": explainers.prompt_version(e)}
    if output:
        spec["steering"] = cfg.steering.model_dump()
    return spec


def scorer_spec(cfg: ProjectConfig, workdir: Path, kind: str) -> dict:
    s = cfg.scorer
    return {"llm": llm_identity(cfg.scorer_llm, workdir), "kind": kind,
            "settings": s.model_dump(exclude={"llm", "scorers"}),
            "prompt_version": scorers.SCORER_PROMPT_VERSION[kind]}


@dataclass
class Context:
    """What every stage needs: the config, its warehouse, the workdir, a logger."""

    cfg: ProjectConfig
    wh: Warehouse
    log: Log = log.info

    @property
    def workdir(self) -> Path:
        return self.cfg.resolve(self.cfg.workdir)

    @classmethod
    def of(cls, cfg: ProjectConfig, log_fn: Log | None = None) -> "Context":
        return cls(cfg, Warehouse(cfg.resolve(cfg.database)), log_fn or log.info)

    def model_dir(self) -> str:
        return resolve_model(self.cfg.subject_model, self.workdir)

    def corpus_fp(self) -> str:
        return fingerprint("corpus", corpus_spec(self.cfg, self.workdir))


def rate(n: int, secs: float) -> float:
    return round(n / secs, 3) if secs > 0 else 0.0
