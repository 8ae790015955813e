"""A small OpenAI-compatible chat server on 127.0.0.1 for fault injection and load benchmarks.

It is not a model: a well-formed request gets a fixed valid answer (an "[EXPLANATION]:" line for
explainer prompts, a list of n 0/1 values with logprobs for scorer prompts). What it is for:
- ``mode`` (switch it at any time): every request gets ``ok``, ``500``, ``garbage`` (a 200 whose body is
  not JSON), ``hang`` (no answer within the client's timeout), ``429`` (with Retry-After), ``truncated``
  (the connection drops halfway through the answer's body) or ``401``; ``GET /v1/models`` lists the model
  (401 in mode 401);
- ``fault_rate``: that share of attempts fails, evenly as a hang past the client's timeout, 429 with
  Retry-After, 500, or a 200 with garbage instead of JSON;
- ``reject``: requests whose last user message contains this string always get a 400 (not retried);
- ``latency_s`` + ``capacity``: each answer takes latency_s and at most ``capacity`` are served at once
  (the rest queue), so saturation throughput is capacity / latency_s requests per second.
It counts what it received: ``outcomes`` per answer kind, ``received`` chat requests, ``call_ids`` (the
ledger ids clients send as the header X-Autointerp-Call), ``arrived`` and ``answered``: (monotonic time,
"explainer" or "scorer") of each chat request as it arrives and of each valid answer as it is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import threading
import time
from collections import Counter

from aiohttp import web

_N_RE = re.compile(r"Answer with a list of (\d+) value")


def answer_for(body: dict) -> tuple[str, list | None]:
    """The fixed valid answer to a chat request body, and its logprobs content (scorer lists only)."""
    messages = body.get("messages", [])
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    m = _N_RE.search(user)
    if m is None:  # an explainer prompt
        prefilled = messages and messages[-1]["role"] == "assistant"
        return ("" if prefilled else "[EXPLANATION]:") + " Words about code and its documentation.", None
    n = int(m.group(1))
    h = hashlib.sha256(user.encode()).digest()
    bits = [h[i % len(h)] & 1 for i in range(n)]
    text = "[" + ", ".join(map(str, bits)) + "]"
    lps = []
    for i, b in enumerate(bits):
        if i:
            lps.append({"token": ",", "logprob": -0.01, "bytes": None, "top_logprobs": []})
        tok, other = (" " if i else "") + str(b), (" " if i else "") + str(1 - b)
        lps.append({"token": tok, "logprob": -0.2, "bytes": None,
                    "top_logprobs": [{"token": tok, "logprob": -0.2, "bytes": None},
                                     {"token": other, "logprob": -1.7, "bytes": None}]})
    return text, [{"token": "[", "logprob": -0.01, "bytes": None, "top_logprobs": []}] + lps


class FakeOpenAIServer:
    MODES = ("ok", "500", "garbage", "hang", "429", "truncated", "401")

    def __init__(self, fault_rate: float = 0.0, hang_s: float = 2.0, retry_after: str = "0.05",
                 reject: str | None = None, latency_s: float = 0.0, capacity: int | None = None, seed: int = 0,
                 mode: str = "ok", models: tuple[str, ...] = ("smollm2",)):
        self.fault_rate, self.hang_s, self.retry_after, self.reject = fault_rate, hang_s, retry_after, reject
        self.mode, self.model_ids = mode, models
        self.received = 0
        self.call_ids: list[str] = []
        self.latency_s, self.capacity = latency_s, capacity
        self.rng = random.Random(seed)
        self.outcomes: Counter = Counter()  # ok / hang / 429 / 500 / garbage / 400
        self.models: Counter = Counter()
        self.bodies: list[dict] = []
        self.arrived: list[tuple[float, str]] = []
        self.answered: list[tuple[float, str]] = []
        self.in_flight = self.max_in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------------------
    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self):
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        self._sem = asyncio.Semaphore(self.capacity) if self.capacity else None
        self._ready.set()
        self._loop.run_forever()

    @property
    def faults(self) -> int:
        return sum(v for k, v in self.outcomes.items() if k not in ("ok", "400"))

    # --- handlers --------------------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "401":
            return web.json_response({"error": {"message": "Incorrect API key provided", "code": 401}}, status=401)
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"}
                                                            for m in self.model_ids]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received += 1
        if request.headers.get("X-Autointerp-Call"):
            self.call_ids.append(request.headers["X-Autointerp-Call"])
        self.bodies.append(body)
        self.models[body.get("model")] += 1
        user = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        self.arrived.append((time.monotonic(), "scorer" if _N_RE.search(user) else "explainer"))
        if self.reject and self.reject in user:
            self.outcomes["400"] += 1
            return web.json_response({"error": {"message": "rejected by the fake server", "type": "invalid_request",
                                                "code": 400}}, status=400)
        fault = self.mode if self.mode != "ok" else None
        if fault is None and self.fault_rate and self.rng.random() < self.fault_rate:
            fault = self.rng.choice(["hang", "429", "500", "garbage"])
        if fault is not None:
            self.outcomes[fault] += 1
            if fault == "401":
                return web.json_response({"error": {"message": "Incorrect API key provided", "code": 401}}, status=401)
            if fault == "hang":
                await asyncio.sleep(self.hang_s)
                return web.json_response({"error": {"message": "too late"}}, status=500)
            if fault == "429":
                return web.json_response({"error": {"message": "slow down"}}, status=429,
                                         headers={"Retry-After": self.retry_after})
            if fault == "500":
                return web.json_response({"error": {"message": "internal error"}}, status=500)
            if fault == "truncated":  # half the body, then the connection drops
                full = self._completion(body, *answer_for(body)).body
                resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                               "Content-Length": str(len(full))})
                await resp.prepare(request)
                await resp.write(full[: len(full) // 2])
                request.transport.close()
                return resp
            return web.Response(body=b'{"choices": [ {"message": tr', content_type="application/json")
        if self._sem is not None:
            async with self._sem:
                return await self._answer(body)
        return await self._answer(body)

    async def _answer(self, body: dict) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            self.outcomes["ok"] += 1
            text, lps = answer_for(body)
            self.answered.append((time.monotonic(), "explainer" if lps is None else "scorer"))
            return self._completion(body, text, lps)
        finally:
            self.in_flight -= 1

    @staticmethod
    def _completion(body: dict, text: str, lps: list | None) -> web.Response:
        choice = {"index": 0, "finish_reason": "stop",
                  "message": {"role": "assistant", "content": text},
                  "logprobs": {"content": lps} if lps is not None and body.get("logprobs") else None}
        prompt = sum(len(m["content"]) for m in body["messages"]) // 4
        usage = {"prompt_tokens": prompt, "completion_tokens": len(text) // 2 + 1,
                 "total_tokens": prompt + len(text) // 2 + 1, "prompt_tokens_details": {"cached_tokens": prompt // 2}}
        return web.json_response({"id": "fake", "object": "chat.completion", "created": 0, "model": body["model"],
                                  "choices": [choice], "usage": usage})


if __name__ == "__main__":  # a separate process for benchmarks: prints its URL, serves until killed
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-s", type=float, default=0.0)
    ap.add_argument("--capacity", type=int, default=None)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    a = ap.parse_args()
    with FakeOpenAIServer(fault_rate=a.fault_rate, latency_s=a.latency_s, capacity=a.capacity) as srv:
        print(srv.url, flush=True)
        while True:
            time.sleep(3600)
