"""Each stage as a function over the Warehouse — what the Dagster assets call, usable from a notebook.

corpus_tokens -> sparse_coders -> activations -> latent_stats -> examples -> explanations -> scores
"""
