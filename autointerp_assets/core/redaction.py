"""Secrets out of everything we store or log: keys written inside URLs, and the values of key variables.

A key belongs in the environment variable named by ``llm.api_key_env``; a user who writes one into
``base_url`` (``https://user:sk-...@host/v1`` or ``...?api_key=sk-...``) must not find it in DuckDB
(fingerprints, errors, the ledger), in Dagster metadata or in a log line. Redaction happens before any of
those: :func:`redact_url` on URLs that become identities, :func:`redact` on any text (errors, messages).
"""

from __future__ import annotations

import os
import re
from typing import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# query parameters that carry credentials (case-insensitive, compared without '-' / '_')
_SECRET_PARAMS = {"key", "apikey", "token", "accesstoken", "secret", "password", "auth", "sig", "signature",
                  "code"}
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# bearer tokens and typical key shapes that may be echoed back by a server's error message
_KEYLIKE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}|\b(sk|rk|pk)-[A-Za-z0-9_\-]{8,}")


def redact_url(url: str | None) -> str | None:
    """The URL with a password / user-info token and credential-like query values replaced by ``***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{MASK}@{host}" if ":" not in userinfo else f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower().replace("-", "").replace("_", "") in _SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower().replace("-", "").replace("_", "") in _SECRET_PARAMS else v)
                               for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secret_values(env_names: Iterable[str] = ()) -> list[str]:
    """The values of the given environment variables that are long enough to be keys."""
    return [v for v in (os.environ.get(n) for n in env_names) if v and len(v) >= 6]


def redact(text: str | None, env_names: Iterable[str] = ()) -> str | None:
    """``text`` with every URL redacted, key-shaped tokens masked and the named env vars' values removed."""
    if not text:
        return text
    out = _URL.sub(lambda m: redact_url(m.group(0)) or "", text)
    out = _KEYLIKE.sub(lambda m: (m.group(1) or "") + MASK, out)
    for v in secret_values(env_names):
        out = out.replace(v, MASK)
    return out
