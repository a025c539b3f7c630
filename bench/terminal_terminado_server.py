"""A tiny terminado server, the baseline: run with the bench's own venv (bench/.venv).

    bench/.venv/bin/python bench/terminal_terminado_server.py [--nodelay] -- /bin/bash --norc

Serves `/websocket/<name>` (terminado's `TermSocket` over a `NamedTermManager`: a terminal lives
on after its websocket closes and replays its buffer to the next one, as in Jupyter Server), plus
two helpers for the benchmark: `GET /bench/stats` (pid and buffered bytes) and
`DELETE /bench/terminals/<name>`. Listens on 127.0.0.1, on a free port it prints as
`LISTENING <port>` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal

import terminado
import tornado.web


class StatsHandler(tornado.web.RequestHandler):
    def initialize(self, manager: terminado.NamedTermManager) -> None:
        self.manager = manager

    def get(self) -> None:
        terminals = self.manager.terminals.values()
        buffered = sum(len(chunk.encode()) for t in terminals for chunk in t.read_buffer)
        self.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "terminals": len(self.manager.terminals),
                    "names": sorted(self.manager.terminals),
                    "buffered_bytes": buffered,
                    "version": terminado.__version__,
                }
            )
        )


class KillHandler(tornado.web.RequestHandler):
    def initialize(self, manager: terminado.NamedTermManager) -> None:
        self.manager = manager

    def delete(self, name: str) -> None:
        # SIGHUP to the process group, as a closed terminal window would; the PTY's EOF then
        # removes the terminal from the manager.
        term = self.manager.terminals.get(name)
        if term is not None:
            term.killpg(signal.SIGHUP)
        self.set_status(204)


class NoDelayTermSocket(terminado.TermSocket):
    def open(self, url_component: object = None) -> None:  # type: ignore[override]
        self.set_nodelay(True)
        super().open(url_component)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodelay", action="store_true", help="set TCP_NODELAY on websockets")
    parser.add_argument("shell", nargs="+")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    manager = terminado.NamedTermManager(shell_command=args.shell, max_terminals=None)
    socket_class = NoDelayTermSocket if args.nodelay else terminado.TermSocket
    app = tornado.web.Application(
        [
            (r"/websocket/([^/]+)/?", socket_class, {"term_manager": manager}),
            (r"/bench/stats", StatsHandler, {"manager": manager}),
            (r"/bench/terminals/([^/]+)", KillHandler, {"manager": manager}),
        ]
    )
    server = app.listen(0, address="127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    print(f"LISTENING {port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await manager.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
