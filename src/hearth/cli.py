"""The hearth command line: 'serve' runs the server; 'ls', 'new', 'attach', 'kill', 'exec' and
'connections' talk to one, found by --url and --token, else HEARTH_URL and HEARTH_TOKEN, else the
local server and the token it generated."""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import hashlib
import json
import re
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
            "terminals": [_dumped(t) for t in terminals],
            "kernels": [_dumped(k.info) for k in kernels],
        }
        print(json.dumps(answer, indent=2))
        return 0
    # many nodes (SPEC §12): which one holds each session; a single node has no such column
    nodes = any(s.node is not None for s in [*terminals, *(k.info for k in kernels)])
    rows = [("KIND", "ID", "NAME", *(["NODE"] if nodes else []), "STATUS", "DETAIL", "AGE")]
    now = time.time()
    for t in terminals:
        detail = f"{t.cols}x{t.rows}, {t.viewers} viewer{'s' if t.viewers != 1 else ''}"
        if t.closed_reason == "node_lost":
            detail = f"lost with node {t.node} (gone for good)"
        elif t.exit_code is not None:
            detail = f"exit code {t.exit_code}"
        elif t.closed_reason == "host_lost":
            detail = "lost when the server stopped (output kept)"
        if t.connection_id is not None:
            detail = f"on {t.connection_id}, {detail}"
        where = [_node(t)] if nodes else []
        age = _age(now - t.created_at)
        rows.append(("terminal", t.id, t.name, *where, t.status, detail, age))
    for k in kernels:
        i = k.info
        detail = f"{i.execution_count} run{'s' if i.execution_count != 1 else ''}"
        if i.closed_reason == "node_lost":
            detail = f"lost with node {i.node} (gone for good)"
        elif i.closed_reason == "host_lost":
            detail = "lost when the server stopped (files kept)"
        age = _age(now - i.created_at) if i.created_at else "-"
        where = [_node(i)] if nodes else []
        rows.append(("kernel", i.session_id, i.kernel_name, *where, i.status, detail, age))
    if len(rows) == 1:
        print("No sessions. 'hearth new' starts a terminal; 'hearth exec CODE' runs code.")
        return 0
    _table(rows)
    return 0


def _dumped(info: Any) -> dict[str, Any]:
    """A session as the server answered it: on a single node, without the cluster's fields."""
    dumped: dict[str, Any] = info.model_dump(
        exclude={"node", "node_reachable"} if info.node is None else None
    )
    return dumped


def _node(info: Any) -> str:
    """The node holding a session (SPEC §12), and whether it can be reached now."""
    if info.node is None:
        return "-"
    return str(info.node) if info.node_reachable else f"{info.node} (unreachable)"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"


def _new(args: argparse.Namespace) -> int:
    from hearth.cli_attach import window_size

    rows, cols = window_size(sys.stdout.fileno())
    with _client(args) as client:
        connection = None if args.connection is None else _connection_id(client, args.connection)
        session = client.terminals.create(
            name=args.name,
            command=args.program or None,
            rows=rows,
            cols=cols,
            connection_id=connection,
            node=args.node,
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


def _connections(args: argparse.Namespace) -> int:
    with _client(args) as client:
        connections = client.connections.list()
    if args.json:
        print(json.dumps([c.model_dump() for c in connections], indent=2))
        return 0
    if not connections:
        print(
            "No connections. 'hearth connections add NAME --host HOST --user USER "
            "--password-stdin' saves one; 'hearth new --connection NAME' opens a terminal on it."
        )
        return 0
    rows = [("ID", "NAME", "ADDRESS", "AUTH", "HOST KEY")]
    for c in connections:
        address = f"{c.username}@{c.host}:{c.port}"
        rows.append((c.id, c.name, address, c.auth, _fingerprint(c.host_key)))
    _table(rows)
    return 0


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def _fingerprint(host_key: str | None) -> str:
    """A host key as ``ssh`` shows it, ``SHA256:…`` (a fingerprint given is shown as it is)."""
    if host_key is None:
        return "not pinned yet (the first key seen will be)"
    if host_key.startswith("SHA256:"):
        return host_key
    try:
        blob = base64.b64decode(host_key.split()[1], validate=True)
    except (IndexError, ValueError):
        return host_key[:60]
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _connections_add(args: argparse.Namespace) -> int:
    password = private_key = passphrase = None
    if args.passphrase_stdin and args.key is None:
        raise ValueError("--passphrase-stdin goes with --key: a password has no passphrase.")
    if args.password_stdin:
        password = _secret(f"Password for {args.user}@{args.host}")
    else:
        private_key = _private_key(args.key)
        if args.passphrase_stdin or (_encrypted(private_key) and sys.stdin.isatty()):
            passphrase = _secret(f"Passphrase of {args.key}")
        elif _encrypted(private_key):
            raise ValueError(
                f"{args.key} is encrypted: give its passphrase with --passphrase-stdin."
            )
    with _client(args) as client:
        made = client.connections.create(
            host=args.host,
            username=args.user,
            port=args.port,
            password=password,
            private_key=private_key,
            passphrase=passphrase,
            host_key=args.host_key,
            id=args.id,
            name=args.name,
        )
    print(made.id)
    return 0


def _secret(prompt: str) -> str:
    """A secret typed at a prompt that does not echo it, or the first line of stdin (the way
    scripts give it: never in the arguments, which every process of the machine can read)."""
    if sys.stdin.isatty():
        try:
            secret = getpass.getpass(f"{prompt}: ")
        except EOFError:  # Ctrl-D
            secret = ""
    else:
        secret = sys.stdin.readline().rstrip("\r\n")  # the line's end only: spaces may count
    if not secret:
        raise ValueError(f"{prompt}: nothing was given.")
    return secret


def _private_key(path: str) -> str:
    try:
        text = Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise ValueError(f"Cannot read the key {path}: {reason}.") from None
    if "PRIVATE KEY-----" not in text:
        raise ValueError(
            f"{path} is not a private key (OpenSSH or PEM text); the .pub file is the public one."
        )
    return text


_OPENSSH_KEY = re.compile(r"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END", re.DOTALL)
_OPENSSH_MAGIC = b"openssh-key-v1\0"


def _encrypted(private_key: str) -> bool:
    """Whether the key needs a passphrase: PEM says so in its header, OpenSSH names its cipher
    (``none`` when not encrypted) right after its magic."""
    if "ENCRYPTED" in private_key:
        return True
    found = _OPENSSH_KEY.search(private_key)
    if found is None:
        return False
    try:
        blob = base64.b64decode("".join(found[1].split()), validate=True)
    except ValueError:
        return False
    if not blob.startswith(_OPENSSH_MAGIC):
        return False
    start = len(_OPENSSH_MAGIC) + 4
    size = int.from_bytes(blob[len(_OPENSSH_MAGIC) : start], "big")
    return blob[start : start + size] != b"none"


def _connections_rm(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.connections.delete(_connection_id(client, args.id))
    return 0


def _connection_id(client: Any, ref: str) -> str:
    """The id of the connection ``ref`` names: its id, else its name when only one has it."""
    from hearth.errors import BadRequest, NotFound

    connections = client.connections.list()
    if any(c.id == ref for c in connections):
        return ref
    named = [c.id for c in connections if c.name == ref]
    if len(named) == 1:
        return str(named[0])
    if named:
        raise BadRequest(
            f"{len(named)} connections are named {ref!r}: give the id of one of "
            f"them ({', '.join(named)})."
        )
    raise NotFound(f"No connection {ref!r}: 'hearth connections' lists yours.")


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
    url_help = "the server (default $HEARTH_URL, else http://127.0.0.1:8765)"
    token_help = "your token (default $HEARTH_TOKEN, else the generated one)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=url_help)
    common.add_argument("--token", help=token_help)

    # a command's own commands take them too, given as None only when they are not at all
    nested = argparse.ArgumentParser(add_help=False)
    nested.add_argument("--url", default=argparse.SUPPRESS, help=url_help)
    nested.add_argument("--token", default=argparse.SUPPRESS, help=token_help)

    def add(
        name: str,
        func: Callable[[argparse.Namespace], int],
        help: str,
        under: Any = commands,
        parent: argparse.ArgumentParser = common,
    ) -> Any:
        sub = under.add_parser(name, parents=[parent], help=help, description=help)
        sub.set_defaults(func=_client_command(func))
        return sub

    ls = add("ls", _ls, "list your terminal and kernel sessions")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    new = add("new", _new, "start a terminal session and attach to it")
    new.add_argument("--name", help="its display name")
    new.add_argument("-d", dest="detach", action="store_true", help="print its id, don't attach")
    new.add_argument(
        "--connection",
        metavar="CONNECTION",
        help="on this saved connection's machine, over SSH (its id or name)",
    )
    new.add_argument(
        "--node",
        metavar="NODE",
        help="on this node of a cluster ('hearth ls' and GET /healthz name them)",
    )
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
    _add_connection_commands(add, nested)


def _add_connection_commands(add: Callable[..., Any], nested: argparse.ArgumentParser) -> None:
    connections = add(
        "connections",
        _connections,
        "list your saved connections to other machines (SSH); add and rm change them",
    )
    connections.add_argument("--json", action="store_true", help="print JSON instead of a table")
    actions = connections.add_subparsers(dest="action", metavar="{add,rm}")
    new = add(
        "add",
        _connections_add,
        "save an SSH connection; its password or passphrase is typed at a prompt, or read "
        "from stdin, never given as an argument",
        under=actions,
        parent=nested,
    )
    new.add_argument(
        "name", metavar="NAME", help="its display name ('hearth new --connection NAME')"
    )
    new.add_argument("--host", required=True, help="the machine's name or address")
    new.add_argument("--port", type=int, default=22, help="its SSH port (default 22)")
    new.add_argument("--user", required=True, help="the user to log in as")
    auth = new.add_mutually_exclusive_group(required=True)
    auth.add_argument(
        "--password-stdin",
        action="store_true",
        help="log in with a password: typed at a prompt, or the first line of stdin",
    )
    auth.add_argument("--key", metavar="FILE", help="log in with this private key file")
    new.add_argument(
        "--passphrase-stdin",
        action="store_true",
        help="the key's passphrase: typed at a prompt, or the first line of stdin (asked "
        "anyway at a terminal when the key is encrypted)",
    )
    new.add_argument(
        "--host-key",
        metavar="KEY_OR_FINGERPRINT",
        help="the server's public key ('ssh-ed25519 AAAA…', quoted) or its SHA256:… "
        "fingerprint; default: the first key seen is pinned",
    )
    new.add_argument("--id", help="its id (default: one is made); 'add' prints it")
    rm = add(
        "rm",
        _connections_rm,
        "delete a saved connection and its secret (terminals open on it go on)",
        under=actions,
        parent=nested,
    )
    rm.add_argument("id", metavar="ID", help="its id or name ('hearth connections' lists them)")


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
