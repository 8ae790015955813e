"""One small async interface every LLM engine implements.

A request is a chat (list of {"role", "content"} messages) plus its *own* sampling parameters —
never shared state between requests (delphi mutates one shared SamplingParams; we don't).
An optional ``prefill`` starts the assistant's answer (e.g. a marker line) where the engine allows it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Sampling:
    """Per-request sampling parameters."""

    temperature: float = 0.0
    max_tokens: int = 64
    top_logprobs: int | None = None  # return this many alternatives per generated token
    stop: tuple[str, ...] = ()
    regex: str | None = None  # constrained decoding where the engine supports it
    seed: int = 0


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[dict, ...]
    sampling: Sampling = Sampling()
    prefill: str = ""  # text the assistant answer is forced to start with (not repeated in .text)
    # the ledger row recorded for this request before it was sent (core.llm.ledger); HTTP engines send it
    # as the header X-Autointerp-Call, so a server's log can be matched with the ledger
    call_id: str | None = field(default=None, compare=False)

    @staticmethod
    def of(messages: Sequence[dict], sampling: Sampling = Sampling(), prefill: str = "") -> "ChatRequest":
        return ChatRequest(tuple(dict(m) for m in messages), sampling, prefill)


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()  # (token text, logprob) alternatives, best first


@dataclass
class ChatResponse:
    text: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    logprobs: list[TokenLogprob] | None = None
    error: str | None = None  # set when the call failed after retries; text is then empty
    attempts: int = 1  # HTTP attempts made (retries + 1); 1 for in-process engines; 0 = never sent
    fatal: bool = False  # the server refuses every request alike (auth, model, connection): the stage stops
    transient: bool = False  # failed with a server-side error that was retried (5xx, 429, timeout, bad body)
    finish_reason: str | None = None  # 'stop', 'length' (cut at max_tokens), ... where the engine says
    call_id: str | None = None  # the request's ledger row (core.llm.ledger)

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class LLMClient(Protocol):
    """Engines: vLLM in-process (``vllm_engine``), any OpenAI-compatible server (``openai_engine``)."""

    engine: str  # "vllm" | "openai"
    model: str
    # overlapping generate() calls in one event loop share the engine's in-flight bound (a server): a stage may
    # send one latent's next requests while others are in flight. False (vLLM in-process): one call at a time,
    # so a stage sends everything in one call.
    concurrent: bool

    def identity(self) -> dict:
        """What makes this engine's answers what they are (engine, model, revision...), for fingerprints."""
        ...

    async def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        """Answer every request; order preserved; failures come back as responses with ``error``."""
        ...

    def close(self) -> None: ...


# Tokenizers without a chat template (base models such as Gemma 3 270M) get a plain transcript: BOS,
# the system text, then "User:" / "Assistant:" turns; the answer continues after "Assistant: ".
# Engines stop such answers at FALLBACK_STOP, where a base model would start the next turn itself.
FALLBACK_CHAT_TEMPLATE = (
    "{{ bos_token or '' }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n\n"
    "{% else %}Assistant: {{ m['content'] }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}"
)
FALLBACK_STOP = ("\nUser:",)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer, messages: Sequence[dict], prefill: str = "") -> str:
    """The prompt text of a chat: the tokenizer's own template, else :data:`FALLBACK_CHAT_TEMPLATE`;
    the generation prompt and ``prefill`` appended. Tokenise it with ``add_special_tokens=False``."""
    kw = {} if has_chat_template(tokenizer) else {"chat_template": FALLBACK_CHAT_TEMPLATE}
    text = tokenizer.apply_chat_template([dict(m) for m in messages], add_generation_prompt=True,
                                         tokenize=False, **kw)
    return text + prefill


def sampling_dict(s: Sampling) -> dict:
    return dataclasses.asdict(s)


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
