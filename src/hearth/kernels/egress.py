"""Where a download made for a session may connect (SPEC §7.1).

The session host fetches a create's ``files`` on the machine's network. Under
``session_network = "none"`` the session itself reaches nothing, so its downloads must reach no
more than the public internet: not the machine's loopback, its own addresses, link-local or
private networks (a proxy, a database, a cloud's metadata service). :class:`CheckedBackend`
checks at the connect, so no DNS rebinding and no redirect gets past.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

import httpcore
import httpx

__all__ = [
    "CheckedBackend",
    "Unreachable",
    "download_client",
    "local_networks",
    "refusal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

_UNSPECIFIED = ipaddress.ip_network("0.0.0.0/8")  # "this network": connecting reaches the machine
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, and the tailnets of VPNs
        "fc00::/7",  # unique local
        "fec0::/10",  # site-local (deprecated, still routed by some)
    )
)


class Unreachable(Exception):
    """A download's host is on this machine's own network; the message says why."""


def refusal(address: IPAddress, own: Iterable[IPNetwork] = ()) -> str | None:
    """Why a session without network can't have ``address`` fetched for it, or None (pure).
    ``own``: the networks of this machine's own interfaces (see :func:`local_networks`)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if address.is_unspecified or address in _UNSPECIFIED:
        return "the unspecified address (this machine)"
    if address.is_loopback:
        return "on this machine's loopback"
    if any(address in network for network in own):
        return "an address of this machine's own interfaces"
    if address.is_link_local:
        return "on a link-local network"
    if any(address in network for network in _PRIVATE):
        return "on a private network"
    return None


def local_networks(fib_trie: str, if_inet6: str) -> list[IPNetwork]:
    """The machine's own addresses, from ``/proc/net/fib_trie`` (its IPv4 routes of type LOCAL:
    every address of an interface, and whole ranges routed to itself) and ``/proc/net/if_inet6``
    (its IPv6 addresses) (pure)."""
    found: list[IPNetwork] = []
    leaf = ""
    for line in fib_trie.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "|--":
            leaf = words[1]
        elif len(words) == 3 and words[0].startswith("/") and words[2] == "LOCAL" and leaf:
            found.append(ipaddress.ip_network(f"{leaf}{words[0]}", strict=False))
    for line in if_inet6.splitlines():
        words = line.split()
        if words and len(words[0]) == 32:
            found.append(ipaddress.IPv6Network(int(words[0], 16)))
    return list(dict.fromkeys(found))


def _read_local_networks() -> list[IPNetwork]:
    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    return local_networks(read("/proc/net/fib_trie"), read("/proc/net/if_inet6"))


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError as exc:
        raise httpcore.ConnectError(f"{host} could not be resolved: {exc}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    return list(dict.fromkeys(addresses))


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses that pass :func:`refusal`: a host with any address that
    doesn't is :class:`Unreachable`. ``resolve``, ``own`` and ``inner`` are the outside world
    (the resolver, the machine's addresses, the backend that connects), for tests.

    A host name is resolved once, every address it has is checked, and the socket is connected
    to an address that was checked, never to a second resolution. Every connection of the HTTP
    client goes through it, so every hop of a redirect is checked too; the Host header and TLS's
    server name stay the URL's, since only the connect is pinned.
    """

    def __init__(
        self,
        *,
        resolve: Resolver = _resolve,
        own: Callable[[], Sequence[IPNetwork]] = _read_local_networks,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._resolve = resolve
        self._own = own
        self._inner = inner or httpcore.AnyIOBackend()

    async def checked(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host``, every one of them allowed, or :class:`Unreachable`."""
        addresses = await self._resolve(host, port)
        own = self._own()
        for address in addresses:
            why = refusal(address, own)
            if why is not None:
                named = host if host == str(address) else f"{host} ({address})"
                raise Unreachable(
                    f'{named} is {why}, which sessions can\'t reach (session_network = "none")'
                )
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failed: Exception | None = None
        for address in await self.checked(host, port):
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failed = exc  # the next address, as a resolver's order suggests
        assert failed is not None
        raise failed

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise Unreachable("a Unix socket is this machine's own")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, its connection pool on a :class:`CheckedBackend`, with no proxy
    (a proxy would fetch for us what the check refused)."""

    def __init__(self, backend: CheckedBackend) -> None:
        super().__init__()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=backend
        )


def download_client(
    network: str, timeout: float, backend: CheckedBackend | None = None
) -> httpx.AsyncClient:
    """The HTTP client that fetches a session's files: under ``session_network = "none"`` it
    connects only where :class:`CheckedBackend` allows; otherwise it is a plain client."""
    if network == "host":
        return httpx.AsyncClient(follow_redirects=True, timeout=timeout)
    transport = _CheckedTransport(backend or CheckedBackend())
    return httpx.AsyncClient(transport=transport, follow_redirects=True, timeout=timeout)
