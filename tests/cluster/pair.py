"""Two nodes, "a" and "b", sharing one Redis, for a whole test module (``pair``): the tests of
tests/cluster/test_any_node.py compare a call made to b with the same call made through a, and
need no fresh cluster for each (a node starts in seconds; a module makes hundreds of calls).

The nodes are those of tests/cluster/nodes.py (``Node``, ``node_env``), started the same way;
every node gets ``PAIR_ENV`` on top, so both answer alike whoever is asked.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator

import pytest

from tests.cluster.nodes import Node, free_ports, node_env, wait_for_nodes
from tests.cluster.redis import Redis
from tests.served import shutdown, unmount_volume

# a terminal's whole output of the resume test (seq 1 100000: ~590 kB) stays buffered
PAIR_ENV = {"HEARTH_MAX_BUFFER_SIZE": "200000", "HEARTH_MAX_BUFFER_BYTES": str(8 << 20)}


@pytest.fixture(scope="module", name="pair")
def pair_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    """Nodes a and b, each seeing the other up; stopped (web servers, then session hosts, then
    Redis) at the module's end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    root = tmp_path_factory.mktemp("pair")
    (root / "redis").mkdir()
    redis = Redis(binary, root / "redis")
    secret = secrets.token_urlsafe(24)
    nodes: list[Node] = []
    workdirs = []
    try:
        for name, port in zip("ab", free_ports(2), strict=True):
            workdir = root / f"node-{name}"
            workdir.mkdir()
            workdirs.append(workdir)
            env = node_env(redis, name, port, secret)
            env.update(PAIR_ENV)
            nodes.append(Node(name, port, workdir, env))
        wait_for_nodes(nodes)
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.served.stop()
        for workdir in workdirs:  # a node that failed to start may have started its host
            shutdown(workdir / "data")
            unmount_volume(workdir / "data")
        redis.stop()
