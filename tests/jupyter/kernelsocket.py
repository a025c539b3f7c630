"""A Jupyter client of a kernel websocket for the tests: messages made by jupyter_client's
``Session``, framed by Jupyter Server's own codec (v1 or the legacy JSON form)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)

V1 = "v1.kernel.websocket.jupyter.org"


class KernelSocket:
    def __init__(self, ws: Any, v1: bool) -> None:
        self.ws, self.v1 = ws, v1
        self.session = Session()

    async def send(
        self,
        channel: str,
        msg_type: str,
        content: dict[str, Any],
        parent: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        msg: dict[str, Any] = self.session.msg(msg_type, content, parent=parent)
        if self.v1:
            await self.ws.send(serialize_msg_to_ws_v1(msg, channel, self.session.pack))
        else:
            await self.ws.send(json.dumps({**msg, "channel": channel}, default=json_default))
        return msg

    async def recv(self, seconds: float = 30) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), seconds)
        if self.v1:
            channel, parts = deserialize_msg_from_ws_v1(raw)
            names = ("header", "parent_header", "metadata", "content")
            msg = {n: json.loads(p) for n, p in zip(names, parts, strict=False)}
            msg["buffers"] = parts[4:]
            msg["channel"] = channel
        elif isinstance(raw, bytes):
            msg = deserialize_binary_message(raw)
        else:
            msg = json.loads(raw)
        msg["msg_type"] = msg["header"]["msg_type"]
        return msg

    async def until(self, test: Any, seconds: float = 30) -> list[dict[str, Any]]:
        """Every message up to and with the first that passes ``test``."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(seconds):
            while True:
                msg = await self.recv(seconds)
                seen.append(msg)
                if test(msg):
                    return seen

    async def request(
        self, channel: str, msg_type: str, content: dict[str, Any], seconds: float = 30
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Send a request; its reply, and the IOPub messages it caused, once it is idle."""
        sent = await self.send(channel, msg_type, content)
        mine = sent["header"]["msg_id"]
        reply: dict[str, Any] | None = None
        iopub: list[dict[str, Any]] = []

        def done(msg: dict[str, Any]) -> bool:
            nonlocal reply
            if msg["parent_header"].get("msg_id") != mine:
                return False
            if msg["channel"] == "iopub":
                iopub.append(msg)
            elif msg["channel"] == channel:
                reply = msg
            return reply is not None and any(
                m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                for m in iopub
            )

        await self.until(done, seconds)
        assert reply is not None
        return reply, iopub

    async def start(self, code: str, **more: Any) -> dict[str, Any]:
        """Send an execute_request (``more``: e.g. ``allow_stdin=True``); the message sent."""
        return await self.send("shell", "execute_request", _execute(code, more))

    async def execute(self, code: str, **more: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Run ``code``; its reply and its IOPub messages, once it is idle."""
        return await self.request("shell", "execute_request", _execute(code, more))


def _execute(code: str, more: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
        **more,
    }


def outputs_text(iopub: list[dict[str, Any]]) -> str:
    """What a notebook would show of these messages, as text."""
    text = []
    for msg in iopub:
        if msg["msg_type"] == "stream":
            text.append(msg["content"]["text"])
        elif msg["msg_type"] in ("execute_result", "display_data"):
            text.append(msg["content"]["data"].get("text/plain", ""))
        elif msg["msg_type"] == "error":
            text.append(msg["content"]["ename"])
    return "".join(text)
