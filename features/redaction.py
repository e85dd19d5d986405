"""Secrets out of anything printed, stored or paged: the one redaction every package uses.

A webhook, a paging channel or a DSN may carry credentials in its URL
(``https://user:PASS@host/…``, ``pagerduty://KEY@ROUTING``, ``…?token=…``). Whatever a URL
ends up in — CLI output, a step's error, the audit trail, an incident title that is paged —
passes through :func:`redact_text` first.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://userinfo@ ; userinfo stops at the first / ? # @ or whitespace.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s]+)@")
# query or fragment parameters whose value is a credential.
_SECRET_PARAM = re.compile(
    r"(?P<key>[?&#;](?:password|passwd|pwd|pass|secret|token|access_token|api[_-]?key|apikey|key|sig|signature"
    r"|auth|authorization|client_secret|private_token)=)(?P<value>[^&#\s'\"]+)", re.IGNORECASE)


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match.group("userinfo").partition(":")
    # user:password keeps the user (it helps to tell endpoints apart); a bare token is all secret.
    shown = f"{user}:{MASK}" if colon else MASK
    return f"{match.group('scheme')}{shown}@"


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL in it masked.

    >>> redact_text("POST http://ops:hunter2@hooks.example/x?token=abc&v=1 failed")
    'POST http://ops:***@hooks.example/x?token=***&v=1 failed'
    >>> redact_text("pagerduty://integration-key@routing-key")
    'pagerduty://***@routing-key'
    """
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(_mask_userinfo, text)
    return _SECRET_PARAM.sub(lambda m: m.group("key") + MASK, text)
