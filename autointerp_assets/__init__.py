"""autointerp_assets: automated interpretability of SAE latents as Dagster assets over DuckDB."""

__version__ = "0.1.0"
