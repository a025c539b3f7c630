"""A small test client for the terminal websocket: collects output by offset and text frames."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from hearth.protocol import decode_output

SHELL = ["/bin/bash", "--norc", "--noprofile"]


class TermClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}
        self.output = bytearray()
        self.first_offset: int | None = None
        self.next_offset: int | None = None
        self.frames: list[dict[str, Any]] = []
        self.closed_code: int | None = None

    @classmethod
    async def connect(cls, base: str, id: str, token: str, **query: Any) -> TermClient:
        params = "&".join(f"{k}={v}" for k, v in {"token": token, **query}.items())
        ws = await websockets.connect(f"{base}/api/v1/terminal/ws/{id}?{params}", max_size=None)
        client = cls(ws)
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["type"] == "hello", first
        client.hello = first
        return client

    async def recv_one(self, timeout: float = 10) -> bytes | dict[str, Any] | None:
        try:
            message = await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as exc:
            self.closed_code = exc.rcvd.code if exc.rcvd else None
            return None
        if isinstance(message, bytes):
            offset, data = decode_output(message)
            if self.next_offset is not None:
                assert offset == self.next_offset, (
                    f"gap or overlap at {offset}, expected {self.next_offset}"
                )
            if self.first_offset is None:
                self.first_offset = offset
            self.output += data
            self.next_offset = offset + len(data)
            return data
        frame: dict[str, Any] = json.loads(message)
        if frame["type"] == "missed":
            self.next_offset = frame["offset"]
        self.frames.append(frame)
        return frame

    async def read_until(self, marker: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        searched = 0  # only look at new bytes: a flood of output must not cost O(n²)
        while self.output.find(marker, searched) < 0:
            searched = max(0, len(self.output) - len(marker) + 1)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{marker!r} not seen; got tail {bytes(self.output[-300:])!r}")
            if await self.recv_one(left) is None:
                raise AssertionError(f"closed ({self.closed_code}) before {marker!r}")
        return bytes(self.output)

    async def frame(self, type: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for f in self.frames:
                if f["type"] == type:
                    self.frames.remove(f)
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {type} frame; frames: {self.frames}")
            if await self.recv_one(left) is None:
                raise AssertionError(f"closed ({self.closed_code}) before a {type} frame")

    async def until_closed(self, timeout: float = 10) -> int | None:
        deadline = time.monotonic() + timeout
        while self.closed_code is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the server did not close the websocket")
            if await self.recv_one(left) is None:
                break
        return self.closed_code

    async def send(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def close(self) -> None:
        await self.ws.close()


async def close_code_of(base: str, path: str, **kwargs: Any) -> int | None:
    """Connect and return the close code the server answers with (None if it stays open)."""
    async with websockets.connect(base + path, **kwargs) as ws:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
