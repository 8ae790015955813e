"""layer × latents partitions, derived from the project config when the code location loads."""

from __future__ import annotations

import dagster as dg

from ..core.config import ProjectConfig, load_config, parse_latent_key

LAYER, LATENTS = "layer", "latents"


def latent_partitions(cfg: ProjectConfig) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({
        LAYER: dg.StaticPartitionsDefinition(cfg.layer_keys()),
        LATENTS: dg.StaticPartitionsDefinition(cfg.latent_keys()),
    })


def bounds(key: str | dg.MultiPartitionKey) -> tuple[str, int, int]:
    """(layer, first latent, last latent) of a partition key."""
    if not isinstance(key, dg.MultiPartitionKey):
        dims = dict(part.split("=", 1) for part in key.split(",")) if "=" in key else None
        if dims is None:  # "latents|layer" string form, dimensions sorted by name
            latents, layer = key.split("|")
            dims = {LAYER: layer, LATENTS: latents}
        key = dg.MultiPartitionKey(dims)
    kd = key.keys_by_dimension
    first, last = parse_latent_key(kd[LATENTS])
    return kd[LAYER], first, last


CONFIG = load_config()
PARTITIONS = latent_partitions(CONFIG)
