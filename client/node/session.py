"""The node's HTTP sessions: TLS verification and the addresses a connection may reach.

Kept apart from the transfer loop and the sources (:mod:`client.node.download`), as pip
keeps ``network/session.py`` apart from ``network/download.py``: this module decides whom
the node talks to, that one what it does with the bytes.

Two sessions: one for the marketplace, which the node's operator chose (any address), and
one for image locations, which an entry's endorser chose: every connection of that one must
reach a public address, or one in the networks of ``allow_private_addresses``. The address
checked is the socket's peer after connecting (so a name resolving to ``127.0.0.1`` is
caught, DNS rebinding included), for every redirect too. TLS certificates are always
verified against the system's CAs; ``ca_bundle`` only adds CAs to them. ``requests`` and
``urllib3`` are imported only when a session is made: the cache-hit path does without.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

USER_AGENT = "stratus-fetcher/0.1"


class AddressRefused(Exception):
    """A connection reached an address the node does not fetch from."""


class SessionSettings(Protocol):
    """What a session needs of the transfer settings (:class:`client.node.download.
    TransferSettings`)."""

    ca_bundle: list[Path]

    @property
    def private_networks(self) -> list: ...


def network_reason(exc: BaseException) -> str:
    """Why a request failed, in plain words ("connection refused"): the innermost error of
    the chain (requests wraps urllib3, which wraps the socket's), without the libraries'
    framing of pools, retries and errno numbers."""
    root = _innermost(exc)
    if isinstance(root, socket.gaierror):
        return f"the host name cannot be resolved ({root.strerror or root})"
    if isinstance(root, OSError) and root.strerror and not isinstance(root, TimeoutError):
        return root.strerror[:1].lower() + root.strerror[1:]
    text = str(root) or type(root).__name__
    return text if len(text) < 200 else text[:200] + "..."


def never_connected(exc: BaseException) -> bool:
    """Whether a request failed before any connection was made (refused, unresolvable,
    connect timeout), as opposed to a connection that broke."""
    from urllib3.exceptions import ConnectTimeoutError  # NewConnectionError's base

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ConnectTimeoutError):
            return True
        seen.add(id(exc))
        inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = getattr(exc, "reason", None) or inner or exc.__cause__
    return False


def _innermost(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return exc


def make_session(settings: SessionSettings):
    """A requests Session that verifies TLS against the system's CAs plus ``ca_bundle``
    (for the marketplace, which the node's operator chose: any address)."""
    return _session(settings, None)


def location_session(settings: SessionSettings):
    """Like :func:`make_session`, but every connection must reach an address that
    :func:`address_allowed` (for the locations, which the entry's endorser chose)."""
    return _session(settings, settings.private_networks)


def address_allowed(address: str, private_networks: list) -> bool:
    """Public addresses always; loopback, link-local, private, reserved and multicast ones
    only inside the networks the node allows (``allow_private_addresses``)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return True
    return any(ip.version == net.version and ip in net for net in private_networks)


def _session(settings: SessionSettings, private_networks: list | None):
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    context = _tls_context(settings.ca_bundle) if settings.ca_bundle else None
    if context is not None or private_networks is not None:
        adapter = _adapter(context, private_networks)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
    return session


def _tls_context(extra: list[Path]):
    import ssl

    import requests.certs

    context = ssl.create_default_context()
    context.load_verify_locations(cafile=os.environ.get("REQUESTS_CA_BUNDLE")
                                  or requests.certs.where())
    for path in extra:
        path = Path(path)
        if not path.exists():
            raise OSError(f"CA bundle {path} does not exist")
        if path.is_dir():
            context.load_verify_locations(capath=str(path))
        else:
            context.load_verify_locations(cafile=str(path))
    return context


def _adapter(context, private_networks: list | None):
    """An HTTPAdapter with our TLS context and/or connections that check the peer address."""
    from requests.adapters import HTTPAdapter

    pools = _guarded_pools(private_networks) if private_networks is not None else None

    class NodeAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            if context is not None:
                kwargs["ssl_context"] = context
            super().init_poolmanager(*args, **kwargs)
            if pools is not None:
                self.poolmanager.pool_classes_by_scheme = pools

        def send(self, request, *args, **kwargs):
            if private_networks is not None:
                _check_proxied_name(request.url, kwargs.get("proxies") or {}, private_networks)
            return super().send(request, *args, **kwargs)

    return NodeAdapter()


def _check_proxied_name(url: str, proxies: dict, private_networks: list) -> None:
    """Through a proxy the connection's peer is the proxy (the operator's choice), so check
    what the location's name resolves to here. A name this host cannot resolve is left to
    the proxy, which then decides."""
    import socket

    from requests.utils import select_proxy

    if not select_proxy(url, proxies):
        return
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return
    for address in sorted(addresses):
        if not address_allowed(address, private_networks):
            raise _address_refused(host, address)


def _address_refused(host: str, address: str) -> AddressRefused:
    where = address if host == address else f"{host} ({address})"
    return AddressRefused(f"{where} is a loopback, link-local or private address; the node "
                          "fetches images from public addresses only (allow_private_addresses "
                          "names the networks of the node's mirrors)")


def _guarded_pools(private_networks: list) -> dict:
    """urllib3 pool classes whose connections refuse a peer outside the allowed addresses.

    The check is on the socket's peer after connecting, so it holds whatever the name
    resolved to (DNS rebinding included) and for every redirect. Through a proxy the peer
    is the proxy: see :func:`_check_proxied_name`.
    """
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Guard:
        def _new_conn(self):
            sock = super()._new_conn()
            peer = sock.getpeername()[0]
            if getattr(self, "proxy", None) is None and \
                    not address_allowed(peer, private_networks):
                sock.close()
                raise _address_refused(self.host, peer)
            return sock

    class GuardedHTTP(Guard, HTTPConnection):
        pass

    class GuardedHTTPS(Guard, HTTPSConnection):
        pass

    return {"http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": GuardedHTTP}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,),
                          {"ConnectionCls": GuardedHTTPS})}
