"""Test support: projects, synthetic partitions, fake servers and fault injectors (benchmarks may import them)."""
