"""The marketplace's transparency log: signing, serving and checking it.

The leaves are appended by the store's :class:`~marketplace.store.state.State` in the same
transaction as the change they record; this package does what comes after: the log key
(:mod:`.keys`), the signed checkpoint, the tiles and the witnesses' cosignatures served at
``/log/`` (:mod:`.served`), and the comparison of the store and its state with the log
(:mod:`.check`). No Flask here: the views in ``marketplace/web/views/log.py`` are thin.
The formats are described in ``docs/log.md``.
"""
