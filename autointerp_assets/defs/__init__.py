"""The thin Dagster shell: partitions, resources and one asset module per stage."""
