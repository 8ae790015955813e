"""The science, with no Dagster imports: config, corpus, caching, examples, prompts, scoring, LLMs, storage."""
