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

Where the moderation state lives: behind the store's interface
(:class:`~marketplace.store.state.State`, ``Store.state``), never in a file of its own. On
SQLite it is in the store's file: an upload's document, change-feed row, audit row and log
leaf are one transaction, shared by every worker of a server. On Elasticsearch it is in
indices of the cluster, so that every server of a site sees every held upload, block and
removal. It holds the pending uploads, the blocked endorsers, the tombstones, the mail
counts, the audit log and the change feed that replicas follow (``/api/v1/changes``).
"""
