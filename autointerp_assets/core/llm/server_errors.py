"""What is wrong with an OpenAI-compatible server, in one line that names the server, the error and the fix.

Two kinds of failure:
- **fatal** — the server refuses every request the same way: a refused connection or unknown host, 401 / 403
  (the key), 404 (the model name or the URL path). Retrying or recording it per latent is pointless: a stage
  stops at once with :class:`LLMServerError`.
- **transient** — timeouts, 429, 5xx, malformed bodies: retried with backoff; what is left after the retries
  is recorded per latent, and a partition whose share of failures is too high fails its step.

:func:`probe` asks the server for its models before any heavy work (``autointerp run`` calls it first).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

from ..redaction import redact, redact_url


class LLMServerError(RuntimeError):
    """A fatal server problem (one line: server, error, fix); stops the stage that met it."""


# What one request met, named as OpenAI's SDK names them (the names people search for):
class APIConnectionError(Exception):
    """No complete answer: the connection was refused, dropped or cut short (``__cause__``: the socket error)."""

    def __init__(self, message: str = "Connection error."):
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    def __init__(self, message: str = "Request timed out."):
        super().__init__(message)


class APIStatusError(Exception):
    """An HTTP error status; ``headers`` (Retry-After) and ``body`` (its start) as the server sent them."""

    def __init__(self, status_code: int, headers, body: str):
        super().__init__(f"Error code: {status_code} - {body[:500]}")
        self.status_code, self.headers, self.body = status_code, headers, body


class BadRequestError(APIStatusError): ...
class AuthenticationError(APIStatusError): ...
class PermissionDeniedError(APIStatusError): ...
class NotFoundError(APIStatusError): ...
class RateLimitError(APIStatusError): ...
class InternalServerError(APIStatusError): ...


def status_error(status_code: int, headers, body: str) -> APIStatusError:
    """The error of an HTTP status >= 400, of the class OpenAI's SDK would raise."""
    cls = {400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
           429: RateLimitError}.get(status_code, InternalServerError if status_code >= 500 else APIStatusError)
    return cls(status_code, headers, body)


def is_local(base_url: str) -> bool:
    """A server on this machine (loopback or localhost), where a key is usually not required."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _key_hint(key_env: str) -> str:
    if os.environ.get(key_env):
        return f"the key in ${key_env} was refused: put a valid key there (llm.api_key_env names the variable)"
    return f"${key_env} is not set: export the server's key in it (llm.api_key_env names the variable)"


def fatal_reason(exc: BaseException, base_url: str, model: str, key_env: str) -> str | None:
    """The one-line message when ``exc`` means every request to this server will fail the same way, else None.
    ``exc``: one of this module's errors (the chat client's) or OpenAI's SDK's (the probe's)."""
    import openai

    server = redact_url(base_url)
    if isinstance(exc, (APIStatusError, openai.APIStatusError)):
        code = exc.status_code
        if code in (401, 403):
            return f"LLM server {server} answered {code} {'Unauthorized' if code == 401 else 'Forbidden'}: {_key_hint(key_env)}"
        if code == 404:
            return (f"LLM server {server} answered 404 Not Found for model {model!r}: fix llm.model (a model the server "
                    "serves) or llm.base_url (OpenAI-compatible servers usually end in /v1)")
        return None
    if isinstance(exc, (APIConnectionError, openai.APIConnectionError)) and \
            not isinstance(exc, (APITimeoutError, openai.APITimeoutError)):
        chain, x = [], exc.__cause__ or exc.__context__
        while x is not None and len(chain) < 8:  # the SDK wraps the socket error in its HTTP library's errors
            chain.append(x)
            x = x.__cause__ or x.__context__
        if any(isinstance(x, socket.gaierror) for x in chain) or \
                any("name or service not known" in str(x).lower() or "name resolution" in str(x).lower() for x in chain):
            return f"cannot resolve the host of {server}: fix llm.base_url"
        if any(isinstance(x, ConnectionRefusedError) or getattr(x, "errno", None) == 111 for x in chain) or \
                any(type(x).__name__ in ("ConnectError", "ClientConnectorError") and "refused" in str(x).lower()
                    for x in chain):
            return f"cannot connect to LLM server {server} (connection refused): start the server or fix llm.base_url"
    return None


def require_key(base_url: str, key_env: str) -> None:
    """A server off this machine needs a key: fail before any work when its variable is empty."""
    if not is_local(base_url) and not os.environ.get(key_env):
        raise LLMServerError(f"${key_env} is not set but LLM server {redact_url(base_url)} is not on this machine "
                             f"and needs a key: export {key_env}=<key> (llm.api_key_env names the variable)")


def probe(base_url: str, model: str, key_env: str, timeout_s: float = 10.0) -> list[str]:
    """Ask the server for its models (GET <base_url>/models): reachable, key accepted, model served.
    Returns the served model ids ([] when the server does not list them); raises :class:`LLMServerError`."""
    import openai

    require_key(base_url, key_env)
    client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(key_env) or "EMPTY", max_retries=0,
                           timeout=timeout_s)
    try:
        ids = [m.id for m in client.models.list()]
    except openai.NotFoundError:
        return []  # no model listing here: a wrong model or path shows at the first request, as a fatal 404
    except (openai.APIError, ValueError) as e:
        reason = fatal_reason(e, base_url, model, key_env)
        if reason is not None:
            raise LLMServerError(reason) from None
        if isinstance(e, openai.APITimeoutError):
            raise LLMServerError(f"LLM server {redact_url(base_url)} did not answer within {timeout_s:.0f}s: check that "
                                 "it is up and not overloaded, or fix llm.base_url") from None
        return []  # a 5xx or an odd body: reachable; transient errors are retried and counted per request
    finally:
        client.close()
    if ids and model not in ids:
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise LLMServerError(f"LLM server {redact_url(base_url)} does not serve model {model!r} (it serves: {shown}): "
                             "fix llm.model")
    return ids


def short(e: BaseException, key_env: str = "", limit: int = 300) -> str:
    """``Type: message`` on one line (with the root cause of a connection error: 'Connection error.' alone says
    nothing), secrets redacted, at most ``limit`` characters."""
    text = " ".join(str(e).split())
    root = e.__cause__
    while root is not None and root.__cause__ is not None:
        root = root.__cause__
    if root is not None and len(text) < 40:
        text += f" ({type(root).__name__}: {' '.join(str(root).split())})"
    msg = redact(text, [key_env] if key_env else []) or repr(e)
    if len(msg) > limit:
        msg = msg[: limit - 3] + "..."
    return f"{type(e).__name__}: {msg}"
