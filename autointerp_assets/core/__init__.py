"""The science, with no Dagster imports: config, corpus, caching, examples, prompts, scoring, LLMs, storage."""

from . import memory  # noqa: F401  (caps the C heap's arenas before any worker thread starts)
