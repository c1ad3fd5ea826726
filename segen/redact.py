"""Credentials kept out of what segen shows and records: in every URL of a text, the user
and password (`https://user:secret@host` -> `https://***@host`) and the values of query
keys that name a secret (`?token=abc` -> `?token=***`) are masked.

Applied where a URI leaves segen's hands for someone else's eyes: log lines and printed
messages that name a server, MLflow params and tags (a params section such as data.remote
or mlflow.tracking_uri may hold a URL with credentials). What segen *uses* stays as given.
"""
from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://userinfo@ : the userinfo ends at the last @ before the host's /, ? or #
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]*(?:@[^/?#\s@]*)*@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;][^=&#\s]*(?:token|secret|password|passwd|pwd|key|signature|sig|"
    r"credential|auth)[^=&#\s]*=)[^&#\s'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """text with the credentials in any URL it holds masked."""
    if "://" not in text:
        return text
    return _SECRET_QUERY.sub(rf"\g<key>{MASK}", _USERINFO.sub(rf"\g<scheme>{MASK}@", text))


def redacted(value: Any) -> Any:
    """value with every string in it redacted (dicts, lists and tuples walked)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redacted(v) for v in value)
    return value
