"""The ``hearth`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hearth.config import load_settings
    from hearth.logs import configure_logging
    from hearth.server.auth import load_or_create_token
    from hearth.server.serve import server_config

    try:
        settings = load_settings(
            args.config, host=args.host, port=args.port, data_dir=args.data_dir
        )
    except (ValidationError, FileNotFoundError) as exc:
        print(f"hearth: bad settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    server = uvicorn.Server(server_config(settings))
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.05)
        port = settings.port
        if port == 0 and server.servers and server.servers[0].sockets:
            port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://{host}:{port}/"
        if not settings.tokens:
            token = next(iter(load_or_create_token(settings.data_dir.expanduser())))
            url += f"?token={token}"
        print(f"Hearth is serving at {url}", flush=True)

    async def run() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(announce())
            await server.serve()

    asyncio.run(run())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8765)")
    serve.add_argument("--data-dir", type=Path, help="where the database and sessions live")
    serve.add_argument("--config", type=Path, help="a TOML file of settings")
    serve.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
