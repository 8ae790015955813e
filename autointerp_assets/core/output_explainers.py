"""Output-centric explainers (Gur-Arieh et al., arXiv 2501.08319): describe a latent by what it does to the
model's output rather than by what makes it fire.

- ``token_change`` (their TokenChange): the explainer LLM sees only the tokens whose next-token probability
  rises most when the latent is stimulated at its calibrated strength, averaged over the explain prompts
  (stage steering), and says what the latent makes the model write.
- ``input_output`` (their ensemble of both sides in one prompt): the default input prompt (highlighted
  train examples) plus that token list; built by ``explainers.build_explainer_request``.

Pure functions; the answer is parsed by ``explainers.parse_explanation`` like every explainer's.
"""

from __future__ import annotations

from typing import Sequence

from .config import ExplainerConfig
from .explainers import COT_MIN_TOKENS, MARKER, promoted_line
from .llm.base import ChatRequest, Sampling

_SYSTEM = (
    "You are an AI researcher explaining one latent (a learned feature) of a language model by its effect on "
    "the model's output. When the latent is stimulated, the model's next-token probabilities change; you get "
    "the tokens whose probability rises most, with the average rise. Say in one concise sentence what kind of "
    "text or tokens the latent makes the model write: no list, and do not repeat every token. "
    "The last line of your answer must be: " + MARKER + " <explanation>"
)
_COT_NOTE = (" Before answering, think briefly: in at most three short lines, say what the promoted tokens share. "
             "Then write the marker line.")

# Few-shot pairs (ours): a word family and a grammatical function.
_FEW_SHOT = [
    ([(" Paris", 0.21), (" London", 0.12), (" Rome", 0.09), (" Berlin", 0.05), (" Madrid", 0.04)],
     MARKER + " Names of European capital cities."),
    ([(" not", 0.15), (" never", 0.11), ("n't", 0.08), (" no", 0.05), (" nothing", 0.03)],
     MARKER + " Negations such as \"not\" and \"never\"."),
]


def token_change_request(cfg: ExplainerConfig, tokens: Sequence[tuple[str, float]]) -> ChatRequest:
    """One chat request asking for the output-side explanation of a latent from its promoted tokens
    ((token, mean probability rise), strongest first; the first ``cfg.n_output_tokens`` are shown)."""
    system = _SYSTEM + (_COT_NOTE if cfg.chain_of_thought else "")
    messages: list[dict] = [{"role": "system", "content": system}]
    for toks, answer in _FEW_SHOT:
        messages += [{"role": "user", "content": promoted_line(toks, cfg.n_output_tokens)},
                     {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": promoted_line(tokens, cfg.n_output_tokens)})
    prefill = MARKER if cfg.prefill_marker and not cfg.chain_of_thought else ""
    max_tokens = max(cfg.max_tokens, COT_MIN_TOKENS) if cfg.chain_of_thought else cfg.max_tokens
    return ChatRequest.of(messages, Sampling(temperature=cfg.temperature, max_tokens=max_tokens), prefill=prefill)
