"""Where a download made for a session may connect (SPEC §7.1): the check of an address (pure),
the machine's own addresses, and the client that pins what it checked, hop by hop."""

from __future__ import annotations

import ipaddress
import typing

import httpcore
import pytest

from hearth.kernels.egress import (
    CheckedBackend,
    IPAddress,
    Unreachable,
    download_client,
    local_networks,
    refusal,
)

from .conftest import FileServer

OWN = [ipaddress.ip_network("192.0.2.2/32"), ipaddress.ip_network("2001:db8::5/128")]


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.200.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("::ffff:192.168.1.1", "private"),
        ("100.64.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("192.0.2.2", "own interfaces"),
        ("2001:db8::5", "own interfaces"),
    ],
)
def test_this_machines_own_networks_are_refused(address: str, why: str) -> None:
    said = refusal(ipaddress.ip_address(address), OWN)
    assert said is not None and why in said


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "172.32.0.1", "192.0.2.3", "2606:4700::1111", "::ffff:1.1.1.1"],
)
def test_the_public_internet_is_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), OWN) is None


FIB_TRIE = """\
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 203.0.113.0/24 2 0 2
           |-- 203.0.113.0
              /24 link UNICAST
           |-- 203.0.113.9
              /32 host LOCAL
"""
IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
20010db8000000000000000000000005 04 40 00 82     eth0
"""


def test_the_machines_own_addresses_are_read_from_the_kernels_tables() -> None:
    assert [str(n) for n in local_networks(FIB_TRIE, IF_INET6)] == [
        "127.0.0.0/8",
        "127.0.0.1/32",
        "203.0.113.9/32",
        "::1/128",
        "2001:db8::5/128",
    ]
    # a public address of an interface of this machine is its own too
    assert refusal(ipaddress.ip_address("203.0.113.9"), local_networks(FIB_TRIE, "")) is not None


async def test_localhost_resolves_to_the_loopback_and_is_refused() -> None:
    with pytest.raises(Unreachable, match=r"localhost \(.*\) is on this machine's loopback"):
        await CheckedBackend().checked("localhost", 80)


async def test_a_host_with_one_address_of_this_machine_is_refused() -> None:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("127.0.0.1")]

    with pytest.raises(Unreachable, match="loopback"):
        await CheckedBackend(resolve=resolve, own=list).checked("mixed.example", 80)


class _Pretend(httpcore.AsyncNetworkBackend):
    """A public address (203.0.113.7) that is really the test's file server on the loopback;
    records every address it is asked to connect to."""

    def __init__(self) -> None:
        self.real = httpcore.AnyIOBackend()
        self.asked: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.asked.append(host)
        assert host == "203.0.113.7", f"connected to {host}, not the address checked"
        return await self.real.connect_tcp("127.0.0.1", port, timeout)

    async def sleep(self, seconds: float) -> None:
        await self.real.sleep(seconds)


async def test_each_hop_of_a_redirect_is_checked(files_server: FileServer) -> None:
    """A public-looking host that redirects to the loopback: the second hop is refused, and the
    first went to the address checked, with the URL's own Host header."""

    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("203.0.113.7" if host == "files.example" else host)]

    pretend = _Pretend()
    port = files_server.httpd.server_address[1]
    back = f"http://127.0.0.1:{port}/data.csv"
    async with download_client(
        "none", 5, CheckedBackend(resolve=resolve, own=list, inner=pretend)
    ) as client:
        with pytest.raises(Unreachable, match=r"^127\.0\.0\.1 is on this machine's loopback"):
            await client.get(f"http://files.example:{port}/moved?to={back}")
    assert files_server.hits == [f"/moved?to={back}"]  # never the loopback's /data.csv
    assert files_server.hosts == [f"files.example:{port}"]
    assert pretend.asked == ["203.0.113.7"]


async def test_a_connection_goes_to_the_address_checked_whatever_dns_says_next(
    files_server: FileServer,
) -> None:
    """DNS rebinding: a name that answers a public address, then the loopback. Each connection
    resolves once and connects to what it checked; the one that resolved to the loopback is
    refused."""
    answers = iter(["203.0.113.7", "127.0.0.1"])
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        asked.append(host)
        return [ipaddress.ip_address(next(answers))]

    pretend = _Pretend()
    port = files_server.httpd.server_address[1]
    backend = CheckedBackend(resolve=rebinding, own=list, inner=pretend)
    async with download_client("none", 5, backend) as client:
        r = await client.get(f"http://files.example:{port}/data.csv")
        assert r.status_code == 200 and r.content == b"a,b\n1,2\n"
        # the file server speaks HTTP/1.0: a new connection, a new resolution
        with pytest.raises(Unreachable, match=r"files\.example \(127\.0\.0\.1\) is on this"):
            await client.get(f"http://files.example:{port}/other.txt")
    assert asked == ["files.example", "files.example"]
    assert pretend.asked == ["203.0.113.7"]
    assert files_server.hits == ["/data.csv"]
