"""The node-side fetcher: trusted appliance images, verified once, cached on a (shared) disk.

A hypervisor node asks for an image by its identifier. The fetcher gets the entries from the
marketplace and verifies each one locally (:mod:`resolve`), applies the node's trust policy
(:mod:`policy`), downloads from the entry's locations with retries, resume and fallback while
decompressing and hashing in the same pass (:mod:`download`), and keeps the verified image
in a cache that many processes and hosts may share (:mod:`cache`, :mod:`locks`), reporting
what happened to a configured command (:mod:`events`). With a ``log_key``, the entry must also
be in the marketplace's transparency log, under a checkpoint that extends the one this node
kept (:mod:`transparency`). :mod:`fetcher` ties these together;
``stratus-image-cache`` and ``stratus-download-image`` are thin shells over it.

Modules on the cache-hit path (config, cache, policy, errors) import only the standard
library, so that ``stratus-image-cache path ID`` answers a hit quickly; the heavy ones
(lxml, xmlsec, requests) load only when a pull needs them.
"""
