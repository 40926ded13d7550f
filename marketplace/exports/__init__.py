"""Exports: the marketplace's index in the formats other tools read (HEPiX image lists,
simplestreams, Atom feeds), produced from the stored entries' summaries, never by parsing the
signed documents again. No Flask here: :mod:`marketplace.web.views.exports` is the thin web side.
"""
