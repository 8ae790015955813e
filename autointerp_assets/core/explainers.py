"""Explainer prompts: show a latent's top examples to an LLM and parse its one-line explanation.

Pure functions (no engine, no storage). The prompt is ours and deliberately compact: the offline
explainer is SmolLM2-135M with a 4096-token context, so 40 examples of 32 tokens plus the few-shot
pairs must fit comfortably.

A parse failure (``parse_explanation`` -> None) is recorded with the raw text and never scored
(delphi scores the literal string "Explanation could not be parsed.").
"""

from __future__ import annotations

import math
import re
from typing import Callable, Sequence

from .config import ExplainerConfig
from .llm.base import ChatRequest, Sampling
from .records import Example

EXPLAINER_PROMPT_VERSION = "default-v1"  # bump whenever the template or few-shots change
# per kind: bump one when its own additions change (the default template is shared by all kinds)
# contrastive-v2: counterexamples from the explainer's own split (train_non_activating), not the scorers'
KIND_PROMPT_VERSION = {"default": "default-v1", "contrastive": "contrastive-v2",
                       "single_token": "single-token-v1", "logit": "logit-v1",
                       "token_change": "token-change-v1", "input_output": "input-output-v1"}
COT_PROMPT_VERSION = "cot-v1"
COT_MIN_TOKENS = 160  # room for a few lines of reasoning plus the marker line

OPEN, CLOSE = "<<", ">>"
MARKER = "[EXPLANATION]:"
MAX_LISTED_ACTIVATIONS = 10  # tokens listed on an example's "Activations:" line
MAX_EXPLANATION_CHARS = 300

_SYSTEM = (
    "You are an AI researcher explaining one latent (a learned feature) of a language model. "
    "You get text examples where the latent is active. Tokens between << and >> are where it fires"
    "{act_note}. "
    "Find what the marked tokens, and the text around them, have in common. "
    "Answer with one concise sentence: no list, no quotes, and do not mention the << >> markers. "
    "The last line of your answer must be: " + MARKER + " <explanation>"
)
_ACT_NOTE = (
    "; the line after each example lists the firing tokens with their strength from 0 to 10"
)

# Few-shot pairs (ours): a token-level feature, an entity feature and a context feature. Kept short.
_FEW_SHOT_ACT = [
    (
        "Example 1: You may<< not>> copy this file.\n"
        "Activations: not (10)\n"
        "Example 2: It does<< not>> return a value.\n"
        "Activations: not (8)\n"
        "Example 3: This is<< not>> a bug.\n"
        "Activations: not (9)",
        MARKER + " The word \"not\" in negated statements.",
    ),
    (
        "Example 1: The meeting was held in<< Paris>> last year.\n"
        "Activations: Paris (10)\n"
        "Example 2: She flew from<< New York>> to Rome.\n"
        "Activations: New (6), York (10)\n"
        "Example 3: Prices in<< Tokyo>> keep rising.\n"
        "Activations: Tokyo (9)",
        MARKER + " Names of cities, mostly after \"in\" or \"from\".",
    ),
    (
        "Example 1: x = f(\"<<hello world>>\")\n"
        "Activations: hello (7), world (10)\n"
        "Example 2: msg = '<<file not found>>'\n"
        "Activations: file (5), not (9), found (10)",
        MARKER + " Words inside a quoted string literal in code.",
    ),
]
_KIND_NOTE = {
    "default": "",
    "contrastive": " After the examples come counterexamples: text where the latent does NOT fire. "
                   "Your explanation must fit the examples and exclude the counterexamples.",
    "single_token": " This latent is expected to fire on one specific token or a small set of tokens. "
                    "Name the token(s) exactly, in quotes, and the context they appear in if it matters.",
    "logit": " After the examples comes the list of tokens the latent makes the model more likely to "
             "predict next; use it when it agrees with the examples.",
    "input_output": " After the examples comes the list of tokens whose probability rises most when the latent "
                    "is stimulated: its effect on the model's output. Say what makes it fire and, when the "
                    "tokens agree, what it makes the model write.",
}
_COT_NOTE = (
    " Before answering, think briefly: in at most three short lines, list what the marked tokens and "
    "their contexts share. Then write the marker line."
)

_FEW_SHOT_PLAIN = [
    ("\n".join(line for line in user.split("\n") if not line.startswith("Activations:")), answer)
    for user, answer in _FEW_SHOT_ACT
]


def highlight(str_tokens: Sequence[str], activations: Sequence[float], threshold: float) -> str:
    """Join tokens; wrap each contiguous run with activation > threshold * max(activations) in << >>.

    No highlight when the example's max activation is <= 0.
    """
    mx = max(activations) if len(activations) else 0.0
    if mx <= 0:
        return "".join(str_tokens)
    cut = threshold * mx
    out: list[str] = []
    inside = False
    for tok, a in zip(str_tokens, activations):
        on = a > cut
        if on and not inside:
            out.append(OPEN)
        elif not on and inside:
            out.append(CLOSE)
        inside = on
        out.append(tok)
    if inside:
        out.append(CLOSE)
    return "".join(out)


def normalize(activations: Sequence[float], latent_max: float) -> list[int]:
    """Integers 0..10 relative to the latent's max activation: ceil(a * 10 / max), clamped; 0 stays 0."""
    if latent_max <= 0:
        return [0] * len(activations)
    return [0 if a <= 0 else min(10, max(0, math.ceil(a * 10 / latent_max))) for a in activations]


def display_token(tok: str) -> str:
    """A token as shown in a prompt: control characters escaped so each example stays on one line,
    and literal "<<" / ">>" (Python's ``>>>`` prompt, shift operators) spaced out so they never read
    as highlight markers."""
    tok = tok.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    while OPEN in tok:
        tok = tok.replace(OPEN, "< <")
    while CLOSE in tok:
        tok = tok.replace(CLOSE, "> >")
    return tok


def _activation_line(ex: Example, threshold: float, latent_max: float, max_listed: int) -> str:
    mx = ex.max_activation
    if mx <= 0:
        return ""
    norm = normalize(ex.activations, latent_max)
    above = [i for i, a in enumerate(ex.activations) if a > threshold * mx]
    # the strongest MAX_LISTED tokens, shown in text order
    keep = sorted(sorted(above, key=lambda i: -ex.activations[i])[:max_listed])
    parts = []
    for i in keep:
        t = display_token(ex.str_tokens[i]).strip() or repr(ex.str_tokens[i])
        parts.append(f"{t} ({norm[i]})")
    return "Activations: " + ", ".join(parts)


def format_examples(
    cfg: ExplainerConfig, examples: Sequence[Example], latent_max: float, max_listed: int = MAX_LISTED_ACTIVATIONS
) -> str:
    lines = []
    for n, ex in enumerate(examples, 1):
        shown = highlight([display_token(t) for t in ex.str_tokens], ex.activations, cfg.threshold)
        lines.append(f"Example {n}: {shown}")
        if cfg.show_activations:
            act = _activation_line(ex, cfg.threshold, latent_max, max_listed)
            if act:
                lines.append(act)
    return "\n".join(lines)


def prompt_version(cfg: ExplainerConfig) -> str:
    """The template version of this explainer kind (+ chain of thought), for its fingerprint."""
    v = f"{EXPLAINER_PROMPT_VERSION}/{KIND_PROMPT_VERSION[cfg.kind]}"
    return v + f"/{COT_PROMPT_VERSION}" if cfg.chain_of_thought else v


def format_counterexamples(examples: Sequence[Example]) -> str:
    return "\n".join(f"Counterexample {n}: " + "".join(display_token(t) for t in ex.str_tokens)
                     for n, ex in enumerate(examples, 1))


def build_explainer_request(
    cfg: ExplainerConfig,
    examples: Sequence[Example],
    latent_max: float,
    max_listed: int = MAX_LISTED_ACTIVATIONS,
    counterexamples: Sequence[Example] = (),
    logit_tokens: Sequence[str] = (),
    output_tokens: Sequence[tuple[str, float]] = (),
) -> ChatRequest:
    """One chat request asking for the explanation of a latent from its train examples.

    ``max_listed``: tokens listed per example on its "Activations:" line (the strongest, in text order).
    ``counterexamples`` (kind contrastive): non-activating windows shown after the examples (split
    ``train_non_activating``, disjoint from the scorers' negatives).
    ``logit_tokens`` (kind logit): tokens the latent's decoder direction promotes through the unembedding.
    ``output_tokens`` (kind input_output): (token, mean probability rise) when the latent is stimulated.
    """
    if cfg.max_examples is not None:
        examples = list(examples)[: cfg.max_examples]
    system = _SYSTEM.format(act_note=_ACT_NOTE if cfg.show_activations else "") + _KIND_NOTE[cfg.kind]
    if cfg.chain_of_thought:
        system += _COT_NOTE
    messages: list[dict] = [{"role": "system", "content": system}]
    for user, assistant in (_FEW_SHOT_ACT if cfg.show_activations else _FEW_SHOT_PLAIN):
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    user = format_examples(cfg, examples, latent_max, max_listed)
    if cfg.kind == "contrastive" and counterexamples:
        user += "\n\n" + format_counterexamples(list(counterexamples)[: cfg.n_counterexamples])
    if cfg.kind == "logit" and logit_tokens:
        shown = ", ".join('"' + (display_token(t).strip() or repr(t)) + '"'
                          for t in list(logit_tokens)[: cfg.n_logit_tokens])
        user += "\n\nTokens this latent promotes: " + shown
    if cfg.kind == "input_output" and output_tokens:
        user += "\n\n" + promoted_line(output_tokens, cfg.n_output_tokens)
    messages.append({"role": "user", "content": user})
    # chain of thought needs the answer to start with reasoning, so no marker prefill
    prefill = MARKER if cfg.prefill_marker and not cfg.chain_of_thought else ""
    max_tokens = max(cfg.max_tokens, COT_MIN_TOKENS) if cfg.chain_of_thought else cfg.max_tokens
    # No newline stop: small models often open with a blank line; the parser takes the first non-empty one.
    sampling = Sampling(temperature=cfg.temperature, max_tokens=max_tokens)
    return ChatRequest.of(messages, sampling, prefill=prefill)


def promoted_line(tokens: Sequence[tuple[str, float]], n: int) -> str:
    """The output side in one line: each token quoted (shown on one line), with its mean probability rise."""
    shown = ", ".join(f'"{display_token(t).strip() or repr(t)}" (+{inc:.3f})' for t, inc in list(tokens)[:n])
    return "Tokens promoted when the latent is stimulated (mean probability rise): " + shown


def fit_explainer_request(
    cfg: ExplainerConfig,
    examples: Sequence[Example],
    latent_max: float,
    count_tokens: Callable[[ChatRequest], int],
    max_prompt_tokens: int,
    **extras,
) -> tuple[ChatRequest, int]:
    """``build_explainer_request`` shrunk until ``count_tokens(request) <= max_prompt_tokens``.

    First lists fewer activation values per example (10, 5, 3), then shows fewer examples, kept evenly
    spread over the given order (which runs across quantiles). ``extras`` (counterexamples,
    logit_tokens, output_tokens) are passed through unchanged. Returns the request and the number of
    examples it shows; if even one example does not fit, the one-example request is returned as is.
    """
    if cfg.max_examples is not None:
        examples = list(examples)[: cfg.max_examples]
    examples = list(examples)
    req = build_explainer_request(cfg, examples, latent_max, **extras)
    if count_tokens(req) <= max_prompt_tokens:
        return req, len(examples)
    listed = [5, 3] if cfg.show_activations else []
    for k in listed:
        req = build_explainer_request(cfg, examples, latent_max, max_listed=k, **extras)
        if count_tokens(req) <= max_prompt_tokens:
            return req, len(examples)
    k = listed[-1] if listed else MAX_LISTED_ACTIVATIONS
    total = n = len(examples)
    while n > 1:
        n = min(n - 1, int(n * 0.9))
        n = max(n, 1)
        subset = [examples[i * total // n] for i in range(n)]
        req = build_explainer_request(cfg, subset, latent_max, max_listed=k, **extras)
        if count_tokens(req) <= max_prompt_tokens:
            return req, n
    return req, n


_MARKER_RE = re.compile(r"(?:\[\s*explanation\s*\]|\bexplanation)\s*:", re.IGNORECASE)
_STRIP_CHARS = " \t*`"
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`"}


def _unquote(line: str) -> str:
    line = line.strip(_STRIP_CHARS)
    while len(line) >= 2 and line[0] in _QUOTE_PAIRS and line[-1] == _QUOTE_PAIRS[line[0]]:
        line = line[1:-1].strip(_STRIP_CHARS)
    return line


def parse_explanation(text: str, prefill: str = "") -> str | None:
    """The explanation after the LAST marker of prefill + text, as one clean line; None on failure.

    None when there is no marker, or what follows it is empty, only punctuation, or longer than
    MAX_EXPLANATION_CHARS.
    """
    full = (prefill or "") + (text or "")
    matches = list(_MARKER_RE.finditer(full))
    if not matches:
        return None
    rest = full[matches[-1].end():]
    line = next((ln for ln in rest.splitlines() if _unquote(ln)), "")
    line = re.sub(r"\s+", " ", line.replace(OPEN, "").replace(CLOSE, ""))
    line = _unquote(line)
    if not line or not any(c.isalnum() for c in line) or len(line) > MAX_EXPLANATION_CHARS:
        return None
    return line


def promoted_tokens(w_dec, unembed, norm_weight=None, k: int = 10):
    """Per latent row of ``w_dec`` [latents, d], the ids of the ``k`` tokens its direction raises most
    through the unembedding [vocab, d] (logit lens; the final norm's gain applied first when given)."""
    import torch

    d = w_dec.float()
    if norm_weight is not None:
        d = d * norm_weight.float()
    return torch.topk(d @ unembed.float().T, k, dim=-1).indices
