"""Named jobs, so that every run says what ran (instead of Dagster's ``__ephemeral_asset_job__``).

- ``corpus_and_sparse_coders``: the unpartitioned start of the pipeline;
- ``latent_range_pipeline``: one partition (layer × latent range) from its activations to its browser pages;
- ``reexplain_and_rescore``: steering, explanations, scores and pages of a partition (what the explainer_change
  sensor runs; steering reuses its rows when they are current);
- ``calibrate``: the known-answer calibration (make run runs it before the partitions; the sensor on a new explainer);
- ``analyses_job``: scorer agreement and SAE similarity over every partition (make run runs it after them).

On Ray (the config's ``ray:``), a failed step -- its worker died with its node -- is retried (``retry_policy``).
"""

import dagster as dg

from .assets import (PARTITIONED_ASSETS, analyses, calibration, corpus_tokens, explanations, latent_pages, latent_vectors,
                     scores, sparse_coders, steering)
from .execution import retry_policy
from .partitions import PARTITIONS


def _job(name: str, selection: list, description: str, partitioned: bool = False):
    return dg.define_asset_job(name, selection=selection, partitions_def=PARTITIONS if partitioned else None,
                               description=description, op_retry_policy=retry_policy())


corpus_and_sparse_coders = _job(
    "corpus_and_sparse_coders", [corpus_tokens, sparse_coders],
    "Corpus rows and one sparse coder per hookpoint (trained or loaded).")
latent_range_pipeline = _job(
    "latent_range_pipeline", PARTITIONED_ASSETS,
    "One layer × latent range: activations, stats, examples, steering, explanations, scores, latent vectors and "
    "browser pages.", partitioned=True)
reexplain_and_rescore = _job(
    "reexplain_and_rescore", [steering, explanations, scores, latent_vectors, latent_pages],
    "Explanations and scores of a partition by the active (or pinned) explainer, then its pages.", partitioned=True)
calibrate = _job(
    "calibrate", [calibration],
    "Planted latents of known meaning scored with their gold, a wrong and the explainer's explanation.")
analyses_job = _job(
    "analyses_job", [analyses],
    "Scorer agreement and SAE similarity over every materialized partition (views and plots).")

JOBS = [corpus_and_sparse_coders, latent_range_pipeline, reexplain_and_rescore, calibrate, analyses_job]
