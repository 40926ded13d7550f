"""Keep the tokens of mailed links out of request logs.

A link's token travels in its query string (``?token=...``). gunicorn writes no access log
unless told to, and ``stratus-marketplace serve`` gives it a format without query strings;
Flask's development server and any access logger still see the query, so this filter
rewrites ``token=...`` in their records.
"""

from __future__ import annotations

import logging
import re

TOKEN = re.compile(r"(token=)[^&\s\"']+")
LOGGERS = ("werkzeug", "gunicorn.access")


class RedactTokens(logging.Filter):
    """Replace the value of every ``token=`` in a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "token=" in text:
            record.msg, record.args = TOKEN.sub(r"\1[redacted]", text), ()
        return True


def redact_tokens() -> None:
    """Put the filter on the request loggers (once)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
