"""Any OpenAI-compatible chat server (a ``vllm serve``, a hosted API) behind :class:`LLMClient`.

Requests are plain JSON over one aiohttp session per event loop (a connection pool of ``max_concurrency``,
shared by overlapping ``generate`` calls and closed when the last of them returns): the body is serialized
once and the answer parsed as a dict, which costs the client a fraction of what OpenAI's SDK spends per
request (its type-driven request transform alone is milliseconds). Errors carry the SDK's names
(:mod:`.server_errors`). We retry timeouts, dropped connections, 429, 5xx and malformed bodies ourselves with
exponential backoff and full jitter, honouring ``Retry-After`` (seconds). Other 4xx are not retried. A *fatal*
error (refused connection, 401 / 403, 404: see :mod:`.server_errors`) stops the whole ``generate`` call and
every later or overlapping call in its event loop: requests not yet sent come back unsent (``attempts=0``)
with the same one-line error and ``fatal=True``. At most ``max_concurrency`` requests are in flight per event
loop, however many ``generate`` calls overlap (``concurrent``: a stage may send a latent's next requests while
other latents' are in flight). The API key
is read from the environment only and never logged, returned or stored; a key written into ``base_url`` is
redacted from the identity and from every error.

vLLM-server extensions are sent only when a request needs them: ``prefill`` adds a final assistant
message with ``continue_final_message=True, add_generation_prompt=False``; ``regex`` is sent as
``structured_outputs={"regex": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import weakref
from dataclasses import dataclass, field
from typing import Sequence

from autointerp_assets.core.llm.base import ChatRequest, ChatResponse, TokenLogprob
from autointerp_assets.core.llm.server_errors import (APIConnectionError, APIStatusError, APITimeoutError,
                                                      fatal_reason, short, status_error)
from autointerp_assets.core.redaction import redact_url

log = logging.getLogger(__name__)

RETRY_AFTER_MAX_S = 600.0


class _BadResponse(Exception):
    """The server answered 2xx with something that is not a chat completion."""


def _retry_after(e: BaseException) -> float | None:
    headers = getattr(e, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        secs = float(value)
    except (TypeError, ValueError):
        return None  # absent, or an HTTP date (not supported: fall back to backoff)
    return min(max(secs, 0.0), RETRY_AFTER_MAX_S)


@dataclass
class _Pool:
    """One event loop's in-flight bound and HTTP session, shared by its overlapping ``generate`` calls."""
    sem: asyncio.Semaphore
    session: object = None
    users: int = 0
    stop: list = field(default_factory=list)  # the fatal error once met: this loop sends nothing more


class OpenAIClient:
    engine = "openai"
    concurrent = True  # overlapping generate() calls share one in-flight bound and one connection pool

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 32,
        timeout_s: float = 120,
        max_retries: int = 6,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30,
    ):
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per event loop: _Pool
        self._closed = False
        self.in_flight = 0  # requests awaiting the server now, and the most ever (throughput checks)
        self.peak_in_flight = 0

    def __repr__(self) -> str:
        return f"OpenAIClient(model={self.model!r}, base_url={redact_url(self.base_url)!r})"

    def identity(self) -> dict:
        return {"engine": "openai", "model": self.model, "base_url": redact_url(self.base_url)}

    def close(self) -> None:
        self._closed = True  # HTTP clients live only for one generate() call

    # --- generation ----------------------------------------------------------------------------
    async def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        if not requests:
            return []
        if self._closed:
            return [ChatResponse(error="RuntimeError: the OpenAI client is closed") for _ in requests]
        import aiohttp

        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _Pool(asyncio.Semaphore(self.max_concurrency))
        if pool.session is None:
            headers = {"Authorization": f"Bearer {os.environ.get(self.api_key_env) or 'EMPTY'}",
                       "Content-Type": "application/json", "Accept": "application/json"}
            pool.session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=self.max_concurrency))
        session = pool.session
        pool.users += 1
        url = self.base_url.rstrip("/") + "/chat/completions"
        try:
            return list(await asyncio.gather(*(self._one(session, url, pool.sem, r, pool.stop) for r in requests)))
        finally:
            pool.users -= 1
            if pool.users == 0:  # the last overlapping call closes the session (connections are not kept idle)
                pool.session = None
                await session.close()

    def _body(self, req: ChatRequest) -> dict:
        """The request's JSON body; vLLM's extensions only where the request needs them."""
        s = req.sampling
        messages = [dict(m) for m in req.messages]
        body: dict = {"model": self.model, "messages": messages, "temperature": s.temperature,
                      "max_tokens": s.max_tokens}
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        if s.top_logprobs is not None:
            body.update(logprobs=True, top_logprobs=s.top_logprobs)
        if req.prefill:
            messages.append({"role": "assistant", "content": req.prefill})
            body.update(continue_final_message=True, add_generation_prompt=False)
        if s.regex:
            body["structured_outputs"] = {"regex": s.regex}
        return body

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))

    async def _one(self, session, url: str, sem: asyncio.Semaphore, req: ChatRequest,
                   stop: list[str]) -> ChatResponse:
        import aiohttp

        data = json.dumps(self._body(req)).encode()
        headers = {"X-Autointerp-Call": req.call_id} if req.call_id else None
        t0 = time.perf_counter()
        last: BaseException | None = None
        attempt = made = 0
        for attempt in range(self.max_retries + 1):
            wait: float | None = None
            try:
                async with sem:
                    if stop:  # another request met a fatal error: this one is not sent (again)
                        return ChatResponse(error=stop[0], latency_s=time.perf_counter() - t0, attempts=made,
                                            fatal=True)
                    made += 1
                    self.in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                    try:
                        async with session.post(url, data=data, headers=headers) as r:
                            status, raw, got = r.status, await r.read(), r.headers
                    except asyncio.TimeoutError as e:
                        raise APITimeoutError() from e
                    except aiohttp.ClientError as e:  # refused, dropped, cut short
                        raise APIConnectionError() from e
                    finally:
                        self.in_flight -= 1
                if status >= 400:
                    raise status_error(status, got, raw.decode("utf-8", "replace"))
                body = json.loads(raw)  # not JSON: retried like a dropped connection
                try:
                    resp = self._response(body, req, time.perf_counter() - t0)
                except (KeyError, TypeError, ValueError, AttributeError) as e:  # JSON, not a chat completion
                    raise _BadResponse(f"not a chat completion ({type(e).__name__}: {e}): {raw[:120]!r}") from e
                resp.attempts = made
                return resp
            except APIStatusError as e:
                last = e
                if self._fatal(e, stop):
                    break
                if e.status_code != 429 and e.status_code < 500:
                    break  # the request itself is wrong: retrying won't help
                wait = _retry_after(e)
            except (APIConnectionError, json.JSONDecodeError, UnicodeDecodeError, _BadResponse) as e:
                last = e
                if self._fatal(e, stop):
                    break
            except Exception as e:  # a surprise: not retried
                last = e
                break
            if attempt < self.max_retries:
                delay = wait if wait is not None else self._backoff(attempt)
                log.debug("openai request failed (%s); retry %d in %.2fs", type(last).__name__, attempt + 1, delay)
                await asyncio.sleep(delay)
        assert last is not None
        if stop:
            return ChatResponse(error=stop[0], latency_s=time.perf_counter() - t0, attempts=made, fatal=True)
        transient = isinstance(last, (APIConnectionError, json.JSONDecodeError, UnicodeDecodeError, _BadResponse)) or \
            (isinstance(last, APIStatusError) and (last.status_code == 429 or last.status_code >= 500))
        return ChatResponse(error=short(last, self.api_key_env), latency_s=time.perf_counter() - t0, attempts=made,
                            transient=transient)

    def _fatal(self, e: BaseException, stop: list[str]) -> bool:
        reason = fatal_reason(e, self.base_url, self.model, self.api_key_env)
        if reason is not None and not stop:
            stop.append(reason)
            log.error("%s", reason)
        return reason is not None

    @staticmethod
    def _response(completion, req: ChatRequest, latency: float) -> ChatResponse:
        """A chat completion (the parsed JSON body) as a ChatResponse; not one: :class:`_BadResponse`."""
        choices = completion.get("choices") if isinstance(completion, dict) else None
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise _BadResponse(f"no choices in response: {str(completion)[:120]!r}")
        choice = choices[0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        lps = None
        content = (choice.get("logprobs") or {}).get("content")
        if req.sampling.top_logprobs is not None and content:
            lps = [TokenLogprob(token=t["token"], logprob=float(t["logprob"]),
                                top=tuple(sorted(((a["token"], float(a["logprob"])) for a in (t.get("top_logprobs") or ())),
                                                 key=lambda x: -x[1])))
                   for t in content]
        usage = completion.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return ChatResponse(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
            latency_s=latency,
            logprobs=lps,
            finish_reason=choice.get("finish_reason"),
        )
