"""One module per stage; ALL lists every asset in pipeline order."""

from .activations import activations, latent_stats
from .corpus import corpus_tokens
from .examples import examples
from .explanations import explanations
from .scores import scores
from .sparse_coders import sparse_coders

ALL = [corpus_tokens, sparse_coders, activations, latent_stats, examples, explanations, scores]
PARTITIONED_ASSETS = [activations, latent_stats, examples, explanations, scores]
