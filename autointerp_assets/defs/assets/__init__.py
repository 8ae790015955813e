"""One module per stage; ALL lists every asset in pipeline order."""

from .activations import activations, latent_stats
from .analyses import analyses
from .calibration import calibration
from .corpus import corpus_tokens
from .examples import examples
from .explanations import explanations
from .latent_pages import latent_pages
from .latent_vectors import latent_vectors
from .scores import scores
from .sparse_coders import sparse_coders
from .steering import steering

ALL = [corpus_tokens, sparse_coders, calibration, activations, latent_stats, examples, steering, explanations, scores,
       latent_vectors, latent_pages, analyses]
PARTITIONED_ASSETS = [activations, latent_stats, examples, steering, explanations, scores, latent_vectors,
                      latent_pages]
