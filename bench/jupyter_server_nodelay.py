"""Jupyter Server with TCP_NODELAY on its kernel websockets (bench only).

Jupyter Server 2.21 leaves Nagle's algorithm on for the websocket to the browser: of the several
messages of one reply, all but the first wait for the browser's delayed ACK (40 ms on Linux).
bench_jupyter.py measures the gateways behind it both ways, to show their own cost."""

import sys

from jupyter_server.serverapp import main
from jupyter_server.services.kernels import websocket

_open = websocket.KernelWebsocketHandler.open


async def _open_without_nagle(self: websocket.KernelWebsocketHandler, kernel_id: str) -> None:
    self.set_nodelay(True)
    await _open(self, kernel_id)


websocket.KernelWebsocketHandler.open = _open_without_nagle  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
