import math

import dagster as dg

from ...core import pipeline
from ..metadata import histogram_md
from ..partitions import PARTITIONS, bounds
from ..resources import ProjectResource
from .corpus import corpus_tokens
from .sparse_coders import sparse_coders


@dg.asset(group_name="activations", kinds={"torch", "duckdb"}, partitions_def=PARTITIONS,
          deps=[corpus_tokens, sparse_coders], backfill_policy=dg.BackfillPolicy.single_run(),
          description="Non-zero latent activations per partition. One forward pass over the corpus serves every "
                      "hookpoint and partition (resumable after a kill); later partitions reuse it.")
def activations(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    cfp, cache = pipeline.ensure_cache(ctx)
    counts = {}
    for key in context.partition_keys:  # a single-run backfill hands us many partitions at once
        layer, first, last = bounds(key)
        counts[str(key)] = pipeline.publish_activations(ctx, cfp, layer, first, last)
    return dg.MaterializeResult(metadata={
        "cache_fp": cfp, "forward_pass_reused": cache["reused"], "cache_tokens": int(cache["tokens"]),
        "cache_nonzero": int(cache["nonzero"]), "cache_seconds": float(cache["seconds"]),
        "tokens_per_s": float(cache.get("tokens_per_s", 0.0)),
        "nonzero": sum(counts.values()), "nonzero_per_partition": dg.MetadataValue.json(counts)})


@dg.asset(group_name="activations", kinds={"duckdb"}, partitions_def=PARTITIONS, deps=[activations],
          description="Per latent: firing count, density, max/mean activation, quantile edges, status "
                      "(alive / too_rare / dead).")
def latent_stats(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    layer, first, last = bounds(context.partition_key)
    out = pipeline.run_latent_stats(project.context(context.log), layer, first, last)
    logd = [math.log10(d) for d in out["densities"] if d > 0]
    return dg.MaterializeResult(metadata={
        **{f"latents_{k}": v for k, v in out["status_counts"].items()},
        "density_histogram": histogram_md(logd, -6, 0, 12, "log10 firing density of live latents")})
