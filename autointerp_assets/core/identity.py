"""Identity: what every artifact is made from (its *spec*) and its fingerprint -- the one place both are computed.

A fingerprint (:func:`..fingerprint.fingerprint`) hashes a spec; rows carry the fingerprint, the
``fingerprints`` table keeps the spec. Every kind is derived here and nowhere else: the stages, the
registry, the sensor and the CLI call these functions with values (a config, a workdir, fingerprints read
from the warehouse), never hash a spec of their own. Changing what a spec holds changes the fingerprint,
and a changed fingerprint is what makes the incremental stages and the sensor redo work -- so a setting
added later is left out of its spec at its default, and earlier artifacts keep their fingerprints.

Kinds: ``corpus``, ``tokenizer``, ``sae-train`` (a training run's directory), ``sae`` (a coder's weights),
``activations`` (one layer's cache), ``cache`` (the forward pass), ``sampler``, ``steering``, ``explainer``,
``scorer``, ``calibration``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from . import corpus, explainer_baselines, explainers
from .caching import resolve_dtype
from .config import LLMConfig, ProjectConfig, SamplerConfig
from .fingerprint import file_digest, fingerprint
from .llm.base import FALLBACK_CHAT_TEMPLATE, FALLBACK_STOP
from .redaction import redact_url
from .scoring import classifier
from .subject_model import resolve_model

# what changes a model's tokens or prompts besides its weights: part of its revision
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "chat_template.jinja")

# tokenizer_config.json keys about how the files were loaded, not what they tokenize (they differ between
# two conversions of the same model, e.g. with and without HF_HUB_OFFLINE)
LOADING_KEYS = frozenset({"local_files_only", "name_or_path", "_commit_hash", "cache_dir", "token", "revision",
                          "trust_remote_code", "force_download", "subfolder"})

CACHE_VERSION = "sparse-fp16-v4"  # v4: every separator position excluded (v3: only position 0)
SAMPLER_VERSION = "windows-v4"  # v4: separators outside the data, windows tile the row (core.windows)
SAE_LOAD_ONLY = {"format", "paths", "revision"}  # loading settings: not part of what training makes
BASELINE_ONLY = {"n_baseline_tokens", "baseline_mass"}  # settings LLM explainers ignore
OUTPUT_KINDS = ("token_change", "input_output")  # explainer kinds that read the steering rows
CONTROL = "derangement"  # the random-explanation control: each latent scored with another latent's explanation


# --- models and LLMs ------------------------------------------------------------------------------------
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


def _workdir(cfg: ProjectConfig, workdir: Path | None) -> Path:
    return workdir if workdir is not None else cfg.resolve(cfg.workdir)


# --- corpus, tokenizer, sparse coders, activations ----------------------------------------------------
def corpus_spec(cfg: ProjectConfig, workdir: Path | None = None) -> dict:
    spec = {"corpus": cfg.corpus.model_dump(), "tokenizer": model_identity(cfg.subject_model, _workdir(cfg, workdir))}
    if corpus.is_local(cfg.corpus.source):  # how local files are read decides the rows too
        spec["reader"] = corpus.LOCAL_READER
    return spec


def corpus_fp(cfg: ProjectConfig, workdir: Path | None = None) -> str:
    return fingerprint("corpus", corpus_spec(cfg, workdir))


def tokenizer_fp(model: dict) -> str:
    """The tokenizer's key in ``vocabulary``: a fingerprint of the subject model's identity (``model_identity``)."""
    return fingerprint("tokenizer", model)


def sae_train_spec(cfg: ProjectConfig, workdir: Path, separators: list) -> dict:
    """What a trained coder is made from; ``separators``: the separator version and token ids."""
    return {"sae": cfg.sae.model_dump(exclude=SAE_LOAD_ONLY), "hookpoints": list(cfg.hookpoints),
            "corpus_fp": corpus_fp(cfg, workdir), "model": model_identity(cfg.subject_model, workdir),
            "dtype": resolve_dtype(cfg.caching.dtype), "separators": separators}


def sae_train_fp(spec: dict) -> str:
    return fingerprint("sae-train", spec)


def sae_fp(digest: str) -> str:
    """A coder's weights, whatever their source: the digest of its files."""
    return fingerprint("sae", {"digest": digest})


def activations_fp(cfg: ProjectConfig, workdir: Path, sae: str, separators: tuple[int, ...]) -> str:
    """One layer's cached activations: corpus, subject model, dtypes, the coder and the separators excluded."""
    return fingerprint("activations", {"version": CACHE_VERSION, "corpus_fp": corpus_fp(cfg, workdir),
                                       "model": model_identity(cfg.subject_model, workdir),
                                       "dtype": resolve_dtype(cfg.caching.dtype),
                                       "encode_dtype": resolve_dtype(cfg.caching.encode_dtype),
                                       "sae_fp": sae, "separators": list(separators)})


def cache_fp(layers: dict[str, str], start: int, stop: int) -> str:
    """The forward pass: every layer's activations fingerprint and the latent range it keeps."""
    return fingerprint("cache", {"layers": layers, "latents": [start, stop]})


# --- sampler, steering ------------------------------------------------------------------------------------
def sampler_spec(cfg: SamplerConfig, activations: str, max_per_range: int | None,
                 embedding_model: dict | None = None) -> dict:
    """Every sampler setting, the activations it reads, the embedding model (hard negatives)."""
    return {"version": SAMPLER_VERSION, "sampler": cfg.model_dump(), "activations_fp": activations,
            "max_per_range": max_per_range, "embedding_model": embedding_model}


def sampler_fp(spec: dict) -> str:
    return fingerprint("sampler", spec)


def steering_spec(cfg: ProjectConfig, workdir: Path, version: str, sae: str | None,
                  explain_prompts: list[str], score_prompts: list[str]) -> dict:
    """What a layer's steering rows are made from: the subject model, its dtype, the coder and the settings."""
    return {"version": version, "model": model_identity(cfg.subject_model, workdir),
            "dtype": resolve_dtype(cfg.caching.dtype), "sae_fp": sae, "bos_token": cfg.corpus.bos_token,
            "settings": cfg.steering.model_dump(exclude={"prompts"}), "explain_prompts": explain_prompts,
            "score_prompts": score_prompts}


def steering_fp(spec: dict) -> str:
    return fingerprint("steering", spec)


# --- explainers -------------------------------------------------------------------------------------------
def explainer_spec(cfg: ProjectConfig, workdir: Path | None = None) -> dict:
    e, workdir = cfg.explainer, _workdir(cfg, workdir)
    if explainer_baselines.is_baseline(e.kind):  # no LLM: what makes its explanations is the rule and its settings
        return {"kind": e.kind, "version": explainer_baselines.BASELINE_VERSION[e.kind],
                "settings": {"n_baseline_tokens": e.n_baseline_tokens, "baseline_mass": e.baseline_mass}}
    output = e.kind in OUTPUT_KINDS  # output-centric: they read the steering rows
    later = ({"max_latents"} if e.max_latents is None else set()) | (set() if output else {"n_output_tokens"})
    spec = {"llm": llm_identity(e.llm, workdir), "settings": e.model_dump(exclude={"llm", *BASELINE_ONLY} | later),
            "prompt_version": explainers.prompt_version(e)}
    if output:
        spec["steering"] = cfg.steering.model_dump()
    return spec


def explainer_fp(cfg: ProjectConfig, workdir: Path | None = None) -> str:
    """The key cfg's explanations and scores rows carry."""
    return explainer_spec_fp(explainer_spec(cfg, workdir))


def gold_explainer_fp(calibration: str) -> str:
    """The calibration's gold explanations (written, not generated): one 'explainer' per calibration."""
    return explainer_spec_fp({"calibration_gold": calibration})


def explainer_spec_fp(spec: dict) -> str:
    """The explainer fingerprint of a spec already in hand (``explainer_spec``)."""
    return fingerprint("explainer", spec)


# --- scorers ----------------------------------------------------------------------------------------------
def scorer_spec(cfg: ProjectConfig, workdir: Path | None, kind: str) -> dict:
    """detection / fuzzing: the scorer LLM, the scorer settings and the prompt version."""
    return {"llm": llm_identity(cfg.scorer_llm, _workdir(cfg, workdir)), "kind": kind,
            "settings": cfg.scorer.model_dump(exclude={"llm", "scorers"}),
            "prompt_version": classifier.SCORER_PROMPT_VERSION[kind]}


def control_spec(spec: dict, seed: int) -> dict:
    """A scorer's random-explanation control: the same scorer given a deranged explanation."""
    return {**spec, "control": {"kind": CONTROL, "seed": seed}}


def embedding_spec(model: dict) -> dict:
    """``model``: the embedding model's identity (``scoring.embedding.identity``)."""
    return {"kind": "embedding", **model}


def surprisal_spec(model: dict, prompt_version: str, dtype: str) -> dict:
    return {"kind": "surprisal", "model": model, "prompt_version": prompt_version, "dtype": dtype}


def simulation_spec(llm: dict, mode: str, top_logprobs: int, max_examples: int, prompt_version: str) -> dict:
    return {"llm": llm, "kind": "simulation", "mode": mode, "top_logprobs": top_logprobs,
            "max_examples": max_examples, "prompt_version": prompt_version}


def intruder_spec(llm: dict, shown: int, rounds: int, threshold: float, seed: int, prompt_version: str) -> dict:
    return {"llm": llm, "kind": "intruder", "shown": shown, "rounds": rounds, "threshold": threshold, "seed": seed,
            "prompt_version": prompt_version}


def intervention_spec(cfg: ProjectConfig, workdir: Path, prompt_version: str, steering: str) -> dict:
    return {"llm": llm_identity(cfg.scorer_llm, workdir), "kind": "intervention", "prompt_version": prompt_version,
            "steering_fp": steering,
            "settings": cfg.scorer.model_dump(include={"examples_per_prompt", "max_tokens", "temperature", "logprobs",
                                                       "constrained", "seed"})}


def scorer_fp(spec: dict) -> str:
    """Any scorer's fingerprint, from one of the specs above."""
    return fingerprint("scorer", spec)


# --- calibration ------------------------------------------------------------------------------------------
def calibration_spec(cfg: ProjectConfig, workdir: Path, version: str, separators: tuple[int, ...],
                     sampler: SamplerConfig) -> dict:
    return {"version": version, "corpus_fp": corpus_fp(cfg, workdir),
            "tokenizer": model_identity(cfg.subject_model, workdir), "separators": list(separators),
            "calibration": cfg.calibration.model_dump(), "sampler": sampler.model_dump()}


def calibration_fp(spec: dict) -> str:
    return fingerprint("calibration", spec)
