"""A test double of a scorer LLM that applies an explanation literally (known answers, not a model).

It reads the intervention scorer's prompt: from an explanation 'promotes "<word>"' it takes the word and,
for each text, answers 1 when only continuation A contains the word, 0 when only B does, and 1 ("A")
otherwise -- an answer that carries no information when the explanation does not fit, so a control
explanation must land at chance (0.5 balanced accuracy).
"""

from __future__ import annotations

import re
from typing import Sequence

from autointerp_assets.core.llm.base import ChatRequest, ChatResponse

_WORD = re.compile(r'promotes "([^"]+)"')
_PAIR = re.compile(r"^\s+A: (.*)\n\s+B: (.*)$", re.MULTILINE)


class LiteralScorer:
    engine = "literal"
    model = "literal-scorer"

    def __init__(self):
        self.requests: list[ChatRequest] = []

    def identity(self) -> dict:
        return {"engine": self.engine, "model": self.model}

    def answer(self, req: ChatRequest) -> str:
        user = req.messages[-1]["content"]
        m = _WORD.search(user)
        word = m.group(1).strip().lower() if m else None
        out = []
        for a, b in _PAIR.findall(user):
            in_a = word is not None and word in a.lower()
            in_b = word is not None and word in b.lower()
            out.append(0 if in_b and not in_a else 1)
        return "[" + ", ".join(map(str, out)) + "]"

    async def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        self.requests += list(requests)
        return [ChatResponse(text=self.answer(r), prompt_tokens=len(r.messages[-1]["content"]) // 4,
                             completion_tokens=3 * len(_PAIR.findall(r.messages[-1]["content"])))
                for r in requests]

    def close(self) -> None:
        pass
