"""Plain records passed between stages (no storage or engine details)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One context window of a latent, ready to be shown to an LLM."""

    example_id: int  # unique within (layer, latent)
    str_tokens: tuple[str, ...]  # one decoded string per token
    activations: tuple[float, ...]  # this latent's activation per token (0 where it does not fire)
    activating: bool
    quantile: int = -1  # 0 = strongest activation bin ... n_quantiles-1 = weakest; -1 non-activating

    @property
    def max_activation(self) -> float:
        return max(self.activations) if self.activations else 0.0
