"""The short way to the trust decision for code that needs only the checked document.

:func:`check_document` asks :func:`~marketplace.metadata.verdict.judge` with no endorser
lists, as of the endorsement date (or exactly ``at``): the validate command's question, and
the one tests and tools ask of documents they made.
"""

from __future__ import annotations

from datetime import datetime

from marketplace.metadata.trust import TrustStore
from marketplace.metadata.verdict import Checked, Moment, judge

__all__ = ["Checked", "check_document"]


def check_document(data: bytes, require_signature: bool = True, at: datetime | None = None,
                   trust_store: TrustStore | None = None) -> Checked:
    """Parse, validate and (when signed, or required to be) verify a document.

    ``at`` is the exact moment the certificate must have been valid (default: the
    endorsement date); no clock, so a document a tool just dated ahead still passes.
    Raises MetadataError naming every problem.
    """
    moment = Moment.endorsement(None, at)
    return judge(data, moment, trust_store, require_signature=require_signature).checked
