"""The stages, each a function over the Warehouse: the public API the Dagster assets call, usable from a notebook.

corpus_tokens -> sparse_coders -> activations -> latent_stats -> examples -> steering -> explanations -> scores
(stage scores: the yes/no scorers, then every other scorer behind one interface with the controls, CIs and
flags, then the intervention scorer) -> latent_vectors -> analyses (unpartitioned: scorer agreement, SAE similarity).
Each lives in ``core/stages/<stage>.py``; the science it drives in ``core/<topic>.py``; what identifies
what they make in ``core/identity.py``.
"""

from .activations import activations_fp, cache_fp, ensure_cache, publish_activations
from .baseline_explanations import baseline_contexts, explained_and_scored, run_baselines
from .calibration import calibration_summary, run_calibration
from .context import Context
from .corpus import load_rows, run_corpus
from .examples import load_examples, run_examples
from .explain_and_score import pipelined, run_explain_and_score
from .explanations import run_explanations
from .latent_stats import run_latent_stats
from .latent_vectors import run_latent_vectors
from .scores import run_scores, scores_metadata
from .sparse_coders import coder_rows, run_sparse_coders
from .steering import run_steering, steering_needed
from .summary import (baseline_comparison, calibration_lines, companion_controls, findings_lines, partition_summary,
                      scorer_findings)

__all__ = [
    "Context", "activations_fp", "baseline_comparison", "baseline_contexts", "cache_fp", "calibration_lines",
    "calibration_summary", "coder_rows", "companion_controls", "ensure_cache", "explained_and_scored",
    "findings_lines", "load_examples", "load_rows", "partition_summary", "pipelined", "publish_activations",
    "run_baselines", "run_calibration", "run_corpus", "run_examples", "run_explain_and_score", "run_explanations",
    "run_latent_stats", "run_latent_vectors", "run_scores", "run_sparse_coders", "run_steering",
    "scorer_findings", "scores_metadata", "steering_needed",
]
