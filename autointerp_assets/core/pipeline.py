"""The stages in pipeline order, in one namespace (for notebooks and the Dagster assets).

corpus_tokens -> sparse_coders -> activations -> latent_stats -> examples -> steering -> explanations -> scores
(asset ``scores`` runs stage scores, then stage scores_more: extra scorers, controls, CIs, flags, then stage
intervention_scores) -> latent_vectors -> analyses (unpartitioned: scorer agreement, SAE similarity)
Each lives in ``core/stages/<stage>.py``; the science it drives in ``core/<topic>.py``.
"""

from .stages.activations import activations_fp, cache_fp, ensure_cache, publish_activations
from .stages.baseline_explanations import baseline_contexts, explained_and_scored, run_baselines
from .stages.calibration import calibration_summary, run_calibration
from .stages.context import Context, explainer_spec, llm_identity, model_identity, scorer_spec
from .stages.corpus import load_rows, run_corpus
from .stages.examples import load_examples, run_examples
from .stages.explanations import run_explanations
from .stages.intervention_scores import merge_intervention, run_intervention_scores
from .stages.latent_stats import run_latent_stats
from .stages.latent_vectors import run_latent_vectors
from .stages.scores import run_scores
from .stages.scores_more import more_scores_metadata, run_more_scores
from .stages.sparse_coders import coder_rows, run_sparse_coders
from .stages.steering import run_steering, steering_needed
from .stages.summary import (baseline_comparison, calibration_lines, companion_controls, findings_lines,
                             partition_summary, scorer_findings)

__all__ = [
    "Context", "activations_fp", "baseline_comparison", "baseline_contexts", "cache_fp", "calibration_lines",
    "calibration_summary", "coder_rows", "companion_controls", "ensure_cache", "explained_and_scored",
    "explainer_spec", "findings_lines", "llm_identity", "load_examples", "load_rows", "merge_intervention",
    "model_identity", "more_scores_metadata", "partition_summary", "publish_activations", "run_baselines",
    "run_calibration", "run_corpus", "run_examples", "run_explanations", "run_intervention_scores",
    "run_latent_stats", "run_latent_vectors", "run_more_scores", "run_scores", "run_sparse_coders", "run_steering",
    "scorer_findings", "scorer_spec", "steering_needed",
]
