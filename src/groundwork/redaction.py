"""Secrets in text a job wrote: which environment variable names hold secrets, and masking
of secret-looking values before a log is shown or exported.

Model-written code never gets the controller's keys (see execution/sandbox.py), but a log
can still carry one (a key pasted into a profile, a library that prints its settings): every
place that shows or exports job output passes it through `redact` first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

MASK = "[redacted]"
MIN_SECRET_CHARS = 8  # shorter values of secret-named variables ("1", "on") are not masked

# Names that hold credentials: ..._API_KEY, ..._TOKEN, anything with SECRET, PASSWORD or
# CREDENTIALS in it. (TOKENIZERS_PARALLELISM is a setting, not a token: the suffix matters.)
_SECRET_NAME = re.compile(r"(^|_)(API_?KEY|TOKEN|ACCESS_KEY)$|SECRET|PASSW(OR)?D|CREDENTIAL", re.IGNORECASE)

# Well-known key formats, masked wherever they appear.
_KEY_FORMATS = re.compile(
    r"sk-ant-[A-Za-z0-9_\-]{8,}"  # Anthropic
    r"|sk-[A-Za-z0-9_\-]{16,}"  # OpenAI (sk-..., sk-proj-...)
    r"|hf_[A-Za-z0-9]{16,}"  # Hugging Face
    r"|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}"  # GitHub
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key ids
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack
)
_BEARER = re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Does an environment variable of this name hold a secret (by its name)?"""
    return bool(_SECRET_NAME.search(name))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The current values of secret-named variables, longest first (a value that contains
    another is masked whole)."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if is_secret_name(k) and len(v) >= MIN_SECRET_CHARS}
    return sorted(values, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with secret-looking values masked: well-known key formats, bearer tokens and
    the values of this process's secret-named environment variables."""
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _KEY_FORMATS.sub(MASK, text)
