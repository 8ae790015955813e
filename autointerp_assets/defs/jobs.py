"""Named jobs, so that every run says what ran (instead of Dagster's ``__ephemeral_asset_job__``).

- ``corpus_and_sparse_coders``: the unpartitioned start of the pipeline;
- ``latent_range_pipeline``: one partition (layer × latent range) from its activations to its browser pages;
- ``reexplain_and_rescore``: steering, explanations, scores and pages of a partition (what the explainer_change
  sensor runs; steering reuses its rows when they are current);
- ``calibrate``: the known-answer calibration (make run runs it before the partitions; the sensor on a new explainer);
- ``analyses_job``: scorer agreement and SAE similarity over every partition (make run runs it after them).
"""

import dagster as dg

from .assets import (PARTITIONED_ASSETS, analyses, calibration, corpus_tokens, explanations, latent_pages, latent_vectors,
                     scores, sparse_coders, steering)
from .partitions import PARTITIONS

corpus_and_sparse_coders = dg.define_asset_job(
    "corpus_and_sparse_coders", selection=[corpus_tokens, sparse_coders],
    description="Corpus rows and one sparse coder per hookpoint (trained or loaded).")
latent_range_pipeline = dg.define_asset_job(
    "latent_range_pipeline", selection=PARTITIONED_ASSETS, partitions_def=PARTITIONS,
    description="One layer × latent range: activations, stats, examples, steering, explanations, scores, latent "
                "vectors and browser pages.")
reexplain_and_rescore = dg.define_asset_job(
    "reexplain_and_rescore", selection=[steering, explanations, scores, latent_vectors, latent_pages],
    partitions_def=PARTITIONS,
    description="Explanations and scores of a partition by the active (or pinned) explainer, then its pages.")

calibrate = dg.define_asset_job(
    "calibrate", selection=[calibration],
    description="Planted latents of known meaning scored with their gold, a wrong and the explainer's explanation.")

analyses_job = dg.define_asset_job(
    "analyses_job", selection=[analyses],
    description="Scorer agreement and SAE similarity over every materialized partition (views and plots).")

JOBS = [corpus_and_sparse_coders, latent_range_pipeline, reexplain_and_rescore, calibrate, analyses_job]
