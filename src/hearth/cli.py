"""The hearth command line: 'serve' runs the server; 'ls', 'new', 'attach', 'kill' and 'exec'
talk to one, found by --url and --token, else HEARTH_URL and HEARTH_TOKEN, else the local server
and the token it generated."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hearth import loops
    from hearth.config import load_settings
    from hearth.errors import HearthError
    from hearth.fds import raise_open_files
    from hearth.logs import configure_logging
    from hearth.server.auth import load_or_create_token
    from hearth.server.host_client import HostClient
    from hearth.server.host_starter import HostStarter
    from hearth.server.serve import server_config

    try:
        settings = load_settings(
            args.config, host=args.host, port=args.port, data_dir=args.data_dir
        )
    except (ValueError, FileNotFoundError) as exc:  # ValidationError, SettingsError, bad TOML
        print(f"hearth: bad settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    raise_open_files()
    tokens = settings.tokens or load_or_create_token(settings.data_dir.expanduser())
    config_files = [args.config] if args.config is not None else []
    client = HostClient(HostStarter(settings, config_files, users=len(set(tokens.values()))))
    server = uvicorn.Server(server_config(settings, config_file=args.config, host=client))
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

    async def run() -> int:
        try:
            await client.link()  # the session host, found or started, before anything listens
        except HearthError as exc:
            print(f"hearth: {exc.message}", file=sys.stderr)
            return 2
        async with asyncio.TaskGroup() as tg:
            tg.create_task(announce())
            await server.serve()
        return 0

    return loops.run(run())


def _host(args: argparse.Namespace) -> int:
    from hearth.host.process import host_main

    try:
        params = json.load(sys.stdin)
    except ValueError:
        print(
            "hearth host: 'hearth serve' starts the session host and hands it its settings on "
            "stdin; run 'hearth serve' instead.",
            file=sys.stderr,
        )
        return 2
    params["settings"]["data_dir"] = str(args.data_dir)
    return host_main(params)


def _shutdown(args: argparse.Namespace) -> int:
    from hearth.config import load_settings
    from hearth.server.host_starter import stop_host

    settings = load_settings(None, data_dir=args.data_dir)
    return asyncio.run(stop_host(settings.data_dir))


# --- client commands ----------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from hearth.client import Client

    return Client(args.url, args.token)


def _ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        terminals = client.terminals.list()
        kernels = client.kernels.list()
    if args.json:
        answer = {
            "terminals": [t.model_dump() for t in terminals],
            "kernels": [k.info.model_dump() for k in kernels],
        }
        print(json.dumps(answer, indent=2))
        return 0
    rows = [("KIND", "ID", "NAME", "STATUS", "DETAIL", "AGE")]
    now = time.time()
    for t in terminals:
        detail = f"{t.cols}x{t.rows}, {t.viewers} viewer{'s' if t.viewers != 1 else ''}"
        if t.exit_code is not None:
            detail = f"exit code {t.exit_code}"
        elif t.closed_reason == "host_lost":
            detail = "lost when the server stopped (output kept)"
        rows.append(("terminal", t.id, t.name, t.status, detail, _age(now - t.created_at)))
    for k in kernels:
        i = k.info
        detail = f"{i.execution_count} run{'s' if i.execution_count != 1 else ''}"
        if i.closed_reason == "host_lost":
            detail = "lost when the server stopped (files kept)"
        age = _age(now - i.created_at) if i.created_at else "-"
        rows.append(("kernel", i.session_id, i.kernel_name, i.status, detail, age))
    if len(rows) == 1:
        print("No sessions. 'hearth new' starts a terminal; 'hearth exec CODE' runs code.")
        return 0
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"


def _new(args: argparse.Namespace) -> int:
    from hearth.cli_attach import window_size

    rows, cols = window_size(sys.stdout.fileno())
    with _client(args) as client:
        session = client.terminals.create(
            name=args.name, command=args.program or None, rows=rows, cols=cols
        )
    if args.detach:
        print(session.id)
        return 0
    args.id, args.replay = session.id, True
    return _attach(args)


def _attach(args: argparse.Namespace) -> int:
    from hearth.cli_attach import AttachState, attach
    from hearth.client._calls import resolve
    from hearth.config import default_data_dir

    url, token = resolve(args.url, args.token)
    state = AttachState(default_data_dir() / "attach-state.json")
    return asyncio.run(attach(url, token, args.id, state=state, replay=args.replay))


def _kill(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.terminals.close(args.id)
    return 0


def _exec(args: argparse.Namespace) -> int:
    code = sys.stdin.read() if args.code == "-" else args.code
    with _client(args) as client:
        kernel = client.kernels.create(session_id=args.session)
        try:
            status = "ok"
            for event in kernel.stream(code, timeout=args.timeout):
                status = _print_event(event, status)
        except KeyboardInterrupt:
            kernel.interrupt()  # stop the code, not only the waiting for it
            raise
        finally:
            if args.session is None:  # made for this run only
                kernel.terminate()
    return 0 if status == "ok" else 1


def _print_event(event: dict[str, Any], status: str) -> str:
    kind = event.get("type")
    if kind == "stream":
        out = sys.stderr if event.get("name") == "stderr" else sys.stdout
        out.write(event.get("text", ""))
        out.flush()
    elif kind in ("execute_result", "display_data"):
        data = event.get("data", {})
        text = data.get("text/plain")
        if text is None:
            text = f"[{', '.join(data) or 'empty'} output]"
        print(text, flush=True)
    elif kind == "error":
        traceback = event.get("traceback") or [f"{event.get('ename')}: {event.get('evalue')}"]
        print("\n".join(traceback), file=sys.stderr, flush=True)
    elif kind == "done":
        if event.get("restarted"):
            print("[hearth] the kernel died and was restarted", file=sys.stderr)
        return str(event.get("status", status))
    return status


def _client_command(func: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Run ``func``; a Hearth error is one line on stderr and exit status 1, not a traceback."""
    from hearth.errors import HearthError, Unauthorized

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except Unauthorized as exc:
            print(f"hearth: {exc.message} (pass --token or set HEARTH_TOKEN)", file=sys.stderr)
        except HearthError as exc:
            print(f"hearth: {exc.message}", file=sys.stderr)
        except ValueError as exc:  # e.g. a --url that is not one
            print(f"hearth: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            return 130
        return 1

    return run


def _add_client_commands(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", help="the server (default $HEARTH_URL, else http://127.0.0.1:8765)"
    )
    common.add_argument(
        "--token", help="your token (default $HEARTH_TOKEN, else the generated one)"
    )

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(func=_client_command(func))
        return sub

    ls = add("ls", _ls, "list your terminal and kernel sessions")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    new = add("new", _new, "start a terminal session and attach to it")
    new.add_argument("--name", help="its display name")
    new.add_argument("-d", dest="detach", action="store_true", help="print its id, don't attach")
    new.add_argument(
        "program",
        nargs="*",
        metavar="-- COMMAND",
        help="the program to run and its arguments, after -- (default: your login shell)",
    )
    attach = add("attach", _attach, "attach this terminal to a session (Ctrl-\\ detaches)")
    attach.add_argument("id", help="the session id ('hearth ls' lists them)")
    attach.add_argument(
        "--replay", action="store_true", help="replay the whole buffer, not only what is new"
    )
    kill = add("kill", _kill, "close a terminal session (its processes end)")
    kill.add_argument("id")
    exec_ = add("exec", _exec, "run code in a kernel session and print its outputs")
    exec_.add_argument("code", help="Python code, or - to read it from stdin")
    exec_.add_argument(
        "--session", help="the kernel session to use (made if new); default: a new one"
    )
    exec_.add_argument("--timeout", type=float, help="seconds before the code is interrupted")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8765)")
    serve.add_argument("--data-dir", type=Path, help="where the database and sessions live")
    serve.add_argument("--config", type=Path, help="a TOML file of settings")
    serve.set_defaults(func=_serve)
    shutdown = commands.add_parser(
        "shutdown", help="end the session host of a data directory and every session in it"
    )
    shutdown.add_argument("--data-dir", type=Path, help="the data directory (default: as serve)")
    shutdown.set_defaults(func=_shutdown)
    host = commands.add_parser("host", help="the session host ('hearth serve' starts it)")
    host.add_argument("--data-dir", type=Path, required=True)
    host.set_defaults(func=_host)
    _add_client_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
