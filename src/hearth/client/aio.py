"""``hearth.AsyncClient``: the same client for asyncio (requests run on ``httpx.AsyncClient``).

Every method of ``hearth.Client`` is here, awaited; ``stream`` is iterated with ``async for``.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from hearth.client import _calls
from hearth.client._calls import UNSET, Call, ClientLifecycle, Unset
from hearth.client.models import (
    ConnectionInfo,
    ConnectionTest,
    ExecutionResult,
    HistoryEntry,
    KernelEvent,
    KernelInfo,
    PoolState,
    TerminalScreen,
    TerminalState,
    WorkingFile,
)

__all__ = [
    "AsyncClient",
    "AsyncConnections",
    "AsyncKernelSession",
    "AsyncKernels",
    "AsyncTerminals",
]

T = TypeVar("T")


class AsyncClient:
    """A connection to a Hearth server, for scripts::

        import hearth

        async with hearth.AsyncClient("http://127.0.0.1:8765", "my-token") as client:
            async with await client.kernels.create() as kernel:   # terminated at the end
                await kernel.upload("data.csv", b"a,b\\n1,2\\n")
                result = await kernel.execute("import pandas; print(pandas.read_csv('data.csv'))")
                print(result.text)

    ``url`` and ``token`` default to ``HEARTH_URL`` / ``HEARTH_TOKEN``, then to
    ``http://127.0.0.1:8765`` and the token ``hearth serve`` generated. Failed calls raise the
    errors of ``hearth.errors`` with the server's message: ``NotFound``, ``Unauthorized``,
    ``Conflict``, ``LimitReached``, ``BadRequest``, ``BadGateway`` (a terminal on a saved
    connection whose machine could not be reached or logged in to); a server that can't be
    reached raises ``ServiceError``. ``timeout`` bounds quick calls; kernel starts, executions
    and file transfers wait as long as they take (give ``execute`` its own ``timeout``).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, token = _calls.resolve(url, token)
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = httpx.Timeout(timeout)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=self._timeout, transport=transport
        )
        self._life = ClientLifecycle()
        self.terminals = AsyncTerminals(self)
        self.kernels = AsyncKernels(self)
        self.connections = AsyncConnections(self)

    async def pool(self) -> PoolState:
        """The warm pool of kernels: ``target``, ``ready``, ``starting``, ``active``."""
        return await self._send(_calls.pool())

    async def aclose(self) -> None:
        """Close the connections; idempotent. Sessions on the server keep running."""
        if self._life.close():
            await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> Self:
        self._life.enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncClient url={self.url!r} state={self._life.state.value}>"

    async def _send(self, call: Call[T]) -> T:
        self._life.use()
        with _calls.transport_errors(self.url, call):
            response = await self._http.request(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                content=call.content,
                timeout=_calls.timeout_of(call, self._timeout),
            )
        _calls.raise_for_status(response.status_code, response.content, call.errors)
        return call.parse(response.content)

    async def _stream(self, call: Call[Any]) -> AsyncIterator[KernelEvent]:
        self._life.use()
        with _calls.transport_errors(self.url, call):
            async with self._http.stream(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                timeout=_calls.timeout_of(call, self._timeout),
            ) as response:
                if response.status_code >= 400:
                    _calls.raise_for_status(
                        response.status_code, await response.aread(), call.errors
                    )
                async for line in response.aiter_lines():
                    if line.strip():
                        yield _calls.parse_event(line)


class AsyncTerminals:
    """The terminal sessions of the account (``client.terminals``)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        name: str | None = None,
        id: str | None = None,
        command: list[str] | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        rows: int | None = None,
        cols: int | None = None,
        connection_id: str | None = None,
        node: str | None = None,
    ) -> TerminalState:
        """Start a shell (or ``command``) on a PTY on the server; it runs until closed or
        timed out, whether or not anyone is attached. An ``id`` you already use: ``Conflict``.

        ``connection_id``: on that saved connection's machine instead, over SSH (the login
        shell there, or ``command``, its words quoted for the remote shell; no ``cwd``). The
        session is like any other, with ``protocol == "ssh"``. A step that fails on the way
        there (unreachable, refused, authentication, host key) raises ``BadGateway`` naming it,
        and leaves no session behind.

        ``node``: on many nodes (SPEC §12), the node to start it on (``GET /healthz`` lists
        them; one that is down: ``HostUnavailable``, one unknown: ``BadRequest``); without it
        the one with the most room. The answer's ``node`` says where it went."""
        call = _calls.create_terminal(
            name=name,
            id=id,
            command=command,
            cwd=cwd,
            env=env,
            rows=rows,
            cols=cols,
            connection_id=connection_id,
            node=node,
        )
        return await self._client._send(call)

    async def list(self) -> list[TerminalState]:
        """The account's terminal sessions, newest first."""
        return await self._client._send(_calls.list_terminals())

    async def get(self, id: str) -> TerminalState:
        """One session's state (``alive``, ``exit_code``, ``viewers``, ``output_end``, …)."""
        return await self._client._send(_calls.get_terminal(id))

    async def rename(self, id: str, name: str) -> TerminalState:
        return await self._client._send(_calls.rename_terminal(id, name))

    async def history(
        self, id: str, since: int | None = None, limit: int | None = None
    ) -> builtins.list[HistoryEntry]:
        """Input, output and system entries, oldest first, from output offset ``since``."""
        return await self._client._send(_calls.terminal_history(id, since, limit))

    async def screen(self, id: str) -> TerminalScreen:
        """What its screen shows now (SPEC §9): ``lines`` as text, ``cursor``, ``alternate``,
        and ``data``, the escape sequences that redraw it; output goes on from ``offset``."""
        return await self._client._send(_calls.terminal_screen(id))

    async def recording(self, id: str) -> str:
        """The buffered session as an asciicast v2 file (play it with ``asciinema play``)."""
        return await self._client._send(_calls.terminal_recording(id))

    async def close(self, id: str) -> None:
        """End the session: its process group is hung up, then killed; its output dropped."""
        await self._client._send(_calls.close_terminal(id))


class AsyncConnections:
    """The account's saved connections to other machines (``client.connections``, SPEC §11).

    Secrets go in and never come back: answers are ``ConnectionInfo``, whose ``auth`` says
    which kind of secret is kept (``"password"``, ``"private_key"``, ``"none"``), not what.
    Open a terminal on one with ``client.terminals.create(connection_id=...)``.
    """

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        host: str,
        username: str,
        *,
        port: int = 22,
        password: str | None = None,
        private_key: str | None = None,
        passphrase: str | None = None,
        host_key: str | None = None,
        id: str | None = None,
        name: str | None = None,
    ) -> ConnectionInfo:
        """Save an SSH connection to ``username@host:port``, with a ``password`` or a
        ``private_key`` (OpenSSH or PEM text, with its ``passphrase`` if it has one); nothing
        is connected yet.

        ``host_key``: the server's public key (a ``known_hosts`` key, ``"ssh-ed25519 AAAA…"``)
        or its ``"SHA256:…"`` fingerprint; without it the first key seen is pinned. ``id``
        (1–64 of ``A-Z a-z 0-9 _ -``) defaults to a generated one, ``name`` to
        ``username@host``. An ``id`` you already use: ``Conflict``; a host outside the
        server's ``connection_allowed_hosts``: ``BadRequest``.
        """
        call = _calls.create_connection(
            host=host,
            username=username,
            port=port,
            password=password,
            private_key=private_key,
            passphrase=passphrase,
            host_key=host_key,
            id=id,
            name=name,
        )
        return await self._client._send(call)

    async def list(self) -> list[ConnectionInfo]:
        """The account's connections, oldest first."""
        return await self._client._send(_calls.list_connections())

    async def get(self, id: str) -> ConnectionInfo:
        return await self._client._send(_calls.get_connection(id))

    async def change(
        self,
        id: str,
        *,
        name: str | Unset = UNSET,
        host: str | Unset = UNSET,
        port: int | Unset = UNSET,
        username: str | Unset = UNSET,
        password: str | Unset = UNSET,
        private_key: str | Unset = UNSET,
        passphrase: str | Unset = UNSET,
        host_key: str | Unset | None = UNSET,
    ) -> ConnectionInfo:
        """Change the fields given, and those only; the rest stay as they are.

        ``host_key=None`` forgets the pinned key: the next connect pins the key it sees. A new
        ``host`` or ``port`` without a ``host_key`` forgets it too (another machine, another
        key). A ``password``, or a ``private_key`` with its ``passphrase``, replaces the secret
        kept, whichever kind it was; ``None`` is refused for every field but ``host_key``
        (``ValueError``).
        """
        call = _calls.change_connection(
            id,
            name=name,
            host=host,
            port=port,
            username=username,
            password=password,
            private_key=private_key,
            passphrase=passphrase,
            host_key=host_key,
        )
        return await self._client._send(call)

    async def delete(self, id: str) -> None:
        """Forget the connection and its secret. Terminals open on it go on."""
        await self._client._send(_calls.delete_connection(id))

    async def test(self, id: str) -> ConnectionTest:
        """Connect: the server's key, whether it matches the pinned one, whether the login
        works. ``BadGateway`` if the server can't be reached."""
        return await self._client._send(_calls.test_connection(id))


class AsyncKernels:
    """The kernel sessions of the account (``client.kernels``)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        session_id: str | None = None,
        files: list[dict[str, str]] | None = None,
        kernel_name: str | None = None,
        node: str | None = None,
    ) -> AsyncKernelSession:
        """A ready kernel, from the warm pool when one is waiting.

        ``files``: ``[{"url": ..., "path": ...}]`` downloaded into its working directory first
        (``path`` optional). A ``session_id`` you already hold gives that same session back,
        with only the files it does not have yet downloaded.

        ``node``: on many nodes (SPEC §12), the node to start it on, as for a terminal.
        """
        info = await self._client._send(_calls.create_kernel(session_id, files, kernel_name, node))
        return AsyncKernelSession(self._client, info)

    async def list(self) -> list[AsyncKernelSession]:
        return [
            AsyncKernelSession(self._client, i)
            for i in await self._client._send(_calls.list_kernels())
        ]

    async def get(self, id: str) -> AsyncKernelSession:
        return AsyncKernelSession(self._client, await self._client._send(_calls.get_kernel(id)))


class AsyncKernelSession:
    """One kernel session: run code in it, move files in and out, end it.

    ``info`` is its state when this object was made (``refresh()`` fetches it again). Used as
    a context manager it is terminated when the block ends.
    """

    def __init__(self, client: AsyncClient, info: KernelInfo) -> None:
        self._client = client
        self.info = info
        self.terminated = False

    @property
    def id(self) -> str:
        return self.info.session_id

    async def refresh(self) -> KernelInfo:
        self.info = await self._client._send(_calls.get_kernel(self.id))
        return self.info

    async def execute(
        self,
        code: str,
        timeout: float | None = None,  # noqa: ASYNC109 - the server's limit: it interrupts the kernel
    ) -> ExecutionResult:
        """Run ``code`` and wait for all its outputs. Code that raises is not an exception
        here: look at ``result.status == "error"`` and ``result.error``."""
        result: ExecutionResult = await self._client._send(_calls.execute(self.id, code, timeout))
        return result

    async def stream(
        self,
        code: str,
        timeout: float | None = None,  # noqa: ASYNC109 - the server's limit
    ) -> AsyncIterator[KernelEvent]:
        """Run ``code`` and yield its events as they happen: ``{"type": "stream", "name",
        "text"}``, ``execute_result``, ``display_data``, ``error``, and last ``{"type":
        "done", "status", "execution_count", "duration_ms", "restarted"}``."""
        call = _calls.execute(self.id, code, timeout, stream=True)
        async for event in self._client._stream(call):
            yield event

    async def upload(self, path: str, data: bytes | str) -> dict[str, Any]:
        """Write ``data`` at ``path`` under the working directory (parents created)."""
        return await self._client._send(_calls.upload(self.id, path, data))

    async def download(self, path: str) -> bytes:
        return await self._client._send(_calls.download(self.id, path))

    async def files(self) -> list[WorkingFile]:
        """Every file under the working directory."""
        return await self._client._send(_calls.kernel_files(self.id))

    async def interrupt(self) -> KernelInfo:
        self.info = await self._client._send(_calls.interrupt_kernel(self.id))
        return self.info

    async def restart(self) -> KernelInfo:
        """A fresh kernel process: every variable and import is gone; files stay."""
        self.info = await self._client._send(_calls.restart_kernel(self.id))
        return self.info

    async def terminate(self) -> None:
        """End the session (its kernel is recycled into the pool, or stopped)."""
        await self._client._send(_calls.terminate_kernel(self.id))
        self.terminated = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self.terminated:
            await self.terminate()

    def __repr__(self) -> str:
        return f"<AsyncKernelSession id={self.id!r} status={self.info.status!r}>"
