"""Real `hearth serve` nodes sharing one Redis, for the cluster tests (SPEC §12): the ``cluster``
fixture starts them, each with its own data directory and a port known before it starts (its
advertised URL names it), the same tokens and cluster secret; at the end it stops every web
server, then their session hosts."""

from __future__ import annotations

import json
import os
import secrets
import signal
import string
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.cluster.redis import Redis
from tests.conftest import ALICE, TOKENS
from tests.served import DISK_LIMIT, HEARTH, Served, free_port, shutdown, unmount_volume

LEASE_S = "2"  # a dead node is seen as one quickly

StartCluster = Callable[..., list["Node"]]


class NodeServed(Served):
    """A node's web server, its stderr to a file: a node logging for long (Redis down) must
    not block on a full pipe."""

    def __init__(self, proc: subprocess.Popen[str], port: int, url_line: str, node: Node) -> None:
        super().__init__(proc, port, url_line, node.data_dir)
        self.node = node

    def stop(self) -> str:
        """SIGTERM, wait, and return the node's log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        return self.node.log()


class Node:
    """One node: ``served`` is its current web server (another one after :meth:`restart_web`);
    its session host outlives the web server, as in production."""

    def __init__(self, name: str, port: int, workdir: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.port = port
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.env = dict(env)
        self.served = self._start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """What its web servers wrote to stderr, for a test's failure message."""
        return (self.workdir / "serve.log").read_text(errors="replace")

    def kill_web(self) -> None:
        """SIGKILL the web server only: its session host and sessions go on."""
        self.served.kill()

    def restart_web(self) -> None:
        """Stop the web server if it runs and start it again: same port, data dir and env."""
        self.served.stop()
        self.served = self._start()

    def stop(self) -> None:
        """Stop the web server, then the session host (its sessions end)."""
        self.served.stop()
        shutdown(self.data_dir)
        unmount_volume(self.data_dir)

    def _start(self) -> NodeServed:
        with open(self.workdir / "serve.log", "a") as log:
            proc = subprocess.Popen(
                [*HEARTH, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=self.env,
            )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        served = NodeServed(proc, self.port, line, self)
        assert "Hearth is serving at" in line, f"node {self.name}: {served.stop()}"
        return served


def wait_for_nodes(nodes: list[Node], deadline_s: float = 30) -> None:
    """Until every node sees every other one up (their leases are in Redis)."""
    deadline = time.monotonic() + deadline_s
    names = {n.name for n in nodes}
    for node in nodes:
        while True:
            health = httpx.get(f"{node.url}/healthz", timeout=5).json()
            seen = {n["name"] for n in health.get("nodes", []) if n["reachable"]}
            if health.get("cluster") == "ok" and names <= seen:
                break
            assert time.monotonic() < deadline, f"{node.name} sees {health}"
            time.sleep(0.05)


def api(node: Node, token: str = ALICE) -> httpx.Client:
    """A REST client of ``node`` as ``token``'s user (alice's by default)."""
    return httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def node_env(redis: Redis, name: str, port: int, secret: str) -> dict[str, str]:
    """The environment of a node, as serve's: none of the machine's HEARTH_ settings but the
    rlimits one the suite sets, no pool, a small disk limit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    if "HEARTH_SESSION_LIMITS" in os.environ:
        env["HEARTH_SESSION_LIMITS"] = os.environ["HEARTH_SESSION_LIMITS"]
    env.update(
        {
            "HEARTH_SESSION_POOL_SIZE": "0",
            "HEARTH_SESSION_DISK_LIMIT": str(DISK_LIMIT),
            "HEARTH_TOKENS": json.dumps(TOKENS),
            "HEARTH_CLUSTER_REDIS_URL": redis.url,
            "HEARTH_CLUSTER_SECRET": secret,
            "HEARTH_NODE_NAME": name,
            "HEARTH_ADVERTISE_URL": f"http://127.0.0.1:{port}",
            "HEARTH_NODE_LEASE_S": LEASE_S,
        }
    )
    return env


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:  # a port just closed may be handed out again
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture
def cluster(redis_server: Redis, tmp_path: Path) -> Iterator[StartCluster]:
    """``cluster(n=3, env=None, env_all=None)``: start ``n`` nodes named "a", "b", … and return
    them in that order; ``env`` maps a node's name to settings of its own (``{"b":
    {"HEARTH_MAX_TERMINALS": "1"}}``), ``env_all`` gives settings to every node; a node's own
    win over env_all, which wins over the defaults. Another call adds nodes, named on ("d", …)."""
    secret = secrets.token_urlsafe(24)
    started: list[Node] = []
    workdirs: list[Path] = []  # a node that failed to start may have started its session host

    def start(
        n: int = 3,
        env: Mapping[str, Mapping[str, str]] | None = None,
        env_all: Mapping[str, str] | None = None,
    ) -> list[Node]:
        names = string.ascii_lowercase[len(workdirs) : len(workdirs) + n]
        assert len(names) == n, "at most 26 nodes"
        unknown = set(env or {}) - set(names)
        assert not unknown, f"env names nodes not started here: {unknown}"
        nodes = []
        for name, port in zip(names, free_ports(n), strict=True):
            full_env = node_env(redis_server, name, port, secret)
            full_env.update(env_all or {})
            full_env.update((env or {}).get(name, {}))
            workdir = tmp_path / f"node-{name}"
            workdir.mkdir()
            workdirs.append(workdir)
            nodes.append(Node(name, port, workdir, full_env))
            started.append(nodes[-1])
        return nodes

    yield start
    for node in started:
        node.served.stop()
    for workdir in workdirs:
        shutdown(workdir / "data")
        unmount_volume(workdir / "data")
