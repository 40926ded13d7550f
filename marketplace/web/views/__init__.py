"""The views: each module a set of routes over the shared modules of :mod:`marketplace.web`;
none imports another."""
