"""Who may publish: endorser lists, emailed confirmation, operators' moderation, audit log.

An upload that passed the core checks (signature, endorser, certificate, trust store) meets
the publication policy of :class:`~marketplace.moderation.workflow.Moderation`:

- a blocked endorser is refused (403);
- an endorser on the whitelist (``MARKETPLACE_ENDORSER_WHITELIST``) is published at once;
- anyone else is published at once, refused, or -- with ``UNLISTED_ENDORSERS=confirm`` --
  kept *pending* while a mail with confirm, abort and report-abuse links goes to the
  endorser's address; pending uploads expire after ``PENDING_HOURS``.

Operators list pending and flagged uploads, remove entries and block endorsers through
``/admin/api`` and ``/admin`` (:mod:`.auth` guards both; nothing is open by default).

Where the moderation state lives: one SQLite file (:mod:`.store`, default
``DATA_DIR/moderation.db``, or ``MARKETPLACE_MODERATION_DB``), one transaction per change,
shared by every gunicorn worker of a server. It holds the pending uploads, the blocked
endorsers, the audit log and the change feed that replicas follow (``/api/v1/changes``).

Limits, said plainly: SQLite is per machine. A site of several servers on one Elasticsearch
cluster shares the entries but NOT this file. Such a site sends the write paths
(``POST /metadata``, ``/upload``, ``/moderation/``, ``/admin/``) to one server -- the others
only read, which needs no moderation state -- or points every server's
``MARKETPLACE_MODERATION_DB`` at one file on storage with working POSIX locks (not NFS).
Replicas must follow that same server. A :class:`~.store.ModerationStore` on the
Elasticsearch cluster would lift this; it is not written yet.
"""
