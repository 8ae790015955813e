import math

import dagster as dg

from ...core import stages
from ..execution import CLIENT, FORWARD, step_tags
from ..metadata import histogram_md, readable
from ..partitions import PARTITIONS, bounds
from ..resources import ProjectResource
from .corpus import corpus_tokens
from .sparse_coders import sparse_coders


@dg.asset(op_tags=step_tags(FORWARD), group_name="activations", kinds={"torch", "duckdb"}, partitions_def=PARTITIONS,
          deps=[corpus_tokens, sparse_coders], backfill_policy=dg.BackfillPolicy.single_run(),
          description="Non-zero latent activations per partition. One forward pass over the corpus serves every "
                      "hookpoint and partition (resumable after a kill); later partitions reuse it.")
def activations(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    ctx = project.context(context.log)
    cfp, cache = stages.ensure_cache(ctx)
    counts = {}
    for key in context.partition_keys:  # a single-run backfill hands us many partitions at once
        layer, first, last = bounds(key)
        counts[str(key)] = stages.publish_activations(ctx, cfp, layer, first, last)
    return dg.MaterializeResult(metadata=readable({
        "cache_fp": cfp, "forward_pass_reused": cache["reused"], "cache_tokens": int(cache["tokens"]),
        "cache_nonzero": int(cache["nonzero"]), "cache_seconds": float(cache["seconds"]),
        "tokens_per_s": float(cache.get("tokens_per_s", 0.0)),
        "nonzero": sum(counts.values()), "nonzero_per_partition": dg.MetadataValue.json(counts)}))


def bars_md(counts: list[int], labels: list[str], title: str) -> dg.MetadataValue:
    """Pre-binned counts as a markdown bar table."""
    top = max(counts) or 1
    lines = [f"**{title}** (n={sum(counts)})", "", "| bin from | count | |", "|---|---:|---|"]
    lines += [f"| {lab} | {c} | {'█' * round(20 * c / top)} |" for lab, c in zip(labels, counts)]
    return dg.MetadataValue.md("\n".join(lines))


@dg.asset(group_name="activations", kinds={"duckdb"}, partitions_def=PARTITIONS, deps=[activations],
          op_tags=step_tags(CLIENT),
          description="Per latent: firing count, density, max/mean activation, quantile edges, a 16-bin activation "
                      "histogram, status (alive / too_rare / dead; every latent listed).")
def latent_stats(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    layer, first, last = bounds(context.partition_key)
    out = stages.run_latent_stats(project.context(context.log), layer, first, last)
    logd = [math.log10(d) for d in out["densities"] if d > 0]
    bins = len(out["pooled_histogram"])
    return dg.MaterializeResult(metadata={
        **{f"latents_{k}": v for k, v in out["status_counts"].items()},
        "dead_latents": dg.MetadataValue.json(out["dead"][:200]),
        "too_rare_latents": dg.MetadataValue.json(out["too_rare"][:200]),
        "corpus_tokens": int(out["n_tokens"]),
        "density_histogram": histogram_md(logd, -6, 0, 12, "log10 firing density of live latents"),
        "activation_histogram": bars_md(out["pooled_histogram"], [f"{i / bins:.2f}" for i in range(bins)],
                                        "activations of alive latents, relative to each latent's max")})
