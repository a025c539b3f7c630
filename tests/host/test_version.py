"""A web server meeting a session host of another protocol version refuses it, saying which runs
and what to do; it never talks to it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.contract import wire
from hearth.contract.place import HostPlace
from hearth.errors import HostUnavailable
from hearth.server.host_starter import HostStarter


async def test_a_host_of_another_protocol_is_reported_with_what_to_do(tmp_path: Path) -> None:
    calls: list[dict[str, object]] = []

    async def old_host(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size, _ = wire.HEADER.unpack(await reader.readexactly(wire.HEADER.size))
        calls.append(wire.read_json(await reader.readexactly(size)))
        hello = {"op": "hello", "protocol": wire.PROTOCOL + 1, "version": "9.9", "pid": 4242}
        writer.write(wire.json_frame(hello))
        await writer.drain()
        try:  # anything more it sent would be a call
            more = await asyncio.wait_for(reader.read(1), 5)
            assert more == b""
        finally:
            writer.close()

    place = HostPlace(tmp_path)
    server = await asyncio.start_unix_server(old_host, str(place.socket))
    try:
        with pytest.raises(HostUnavailable) as refused:
            await HostStarter(Settings(data_dir=tmp_path))()
    finally:
        server.close()
    message = refused.value.message
    assert "Hearth 9.9" in message and "pid 4242" in message
    assert f"hearth shutdown --data-dir {place.data_dir}" in message
    assert calls == [{"op": "hello", "protocol": wire.PROTOCOL, "version": calls[0]["version"]}]
