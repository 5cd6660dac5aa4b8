"""What Bitbucket said in an error answer, read defensively.

Pure code. Bitbucket's 2.0 API answers ``{"type": "error", "error": {"message": ...,
"detail": ...}}``, its OAuth endpoint ``{"error": ..., "error_description": ...}``, and
some errors (the 429 among them) plain text. Any of them may be something else: the text
is untrusted, so it is cleaned and cut before it reaches an exception or a log.
"""

from __future__ import annotations

import json

from bitbucket_install.identifiers import clean_display_text

MAX_BODY_READ = 64 * 1024
MAX_TEXT_LENGTH = 500


def error_text(body: bytes, reason_phrase: str = "") -> tuple[str, str]:
    """``(message, detail)`` of an error body; ``reason_phrase`` when it says nothing."""
    head = body[:MAX_BODY_READ]
    message, detail = _from_json(head)
    if not message:
        message = _clean(head.decode("utf-8", "replace"))
        detail = ""
    return (message or _clean(reason_phrase)), detail


def _from_json(body: bytes) -> tuple[str, str]:
    # Only an object can be one of the error shapes (and JSON that starts with "{" and
    # parses is one).
    if not body.lstrip().startswith(b"{"):
        return "", ""
    try:
        data = json.loads(body)
    # RecursionError: JSON nested deeper than the interpreter's stack.
    except (ValueError, RecursionError):
        return "", ""
    error = data.get("error")
    if isinstance(error, dict):
        return _clean(error.get("message")), _clean(error.get("detail"))
    if isinstance(error, str):
        return _clean(error), _clean(data.get("error_description"))
    return "", ""


def _clean(value: object) -> str:
    """``value`` as one line of at most ``MAX_TEXT_LENGTH`` visible characters; anything
    but a string (a missing field, an object where text belongs) as ``""``."""
    if not isinstance(value, str):
        return ""
    return clean_display_text(" ".join(value.split()), MAX_TEXT_LENGTH)
