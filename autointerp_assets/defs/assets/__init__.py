"""One module per stage; ALL lists every asset in pipeline order."""

from .activations import activations, latent_stats
from .calibration import calibration
from .corpus import corpus_tokens
from .examples import examples
from .explanations import explanations
from .latent_pages import latent_pages
from .scores import scores
from .sparse_coders import sparse_coders

ALL = [corpus_tokens, sparse_coders, calibration, activations, latent_stats, examples, explanations, scores,
       latent_pages]
PARTITIONED_ASSETS = [activations, latent_stats, examples, explanations, scores, latent_pages]
