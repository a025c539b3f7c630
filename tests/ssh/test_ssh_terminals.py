"""Terminals on a saved connection (SPEC §11), against a real sshd on 127.0.0.1: the session is
like any other, and every failed step at create is a 502 that names it and leaves nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any

import httpx

from tests.conftest import ALICE, BOB, RunningServer
from tests.server.termclient import TermClient
from tests.ssh.sshd import Sshd

CONNECTIONS = "/api/v1/connections"
TERMINALS = "/api/v1/terminal/sessions"


def rest(server: RunningServer, token: str = ALICE) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def saved(server: RunningServer, sshd: Sshd, **fields: Any) -> dict[str, Any]:
    body = {
        "id": "box",
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.password_user,
        "auth": {"password": sshd.password},
        **fields,
    }
    async with rest(server) as c:
        r = await c.post(CONNECTIONS, json=body)
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def open_terminal(server: RunningServer, **fields: Any) -> httpx.Response:
    async with rest(server) as c:
        return await c.post(TERMINALS, json={"connection_id": "box", **fields})


async def test_a_terminal_on_a_connection_runs_there_and_pins_the_host_key(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(server, sshd)
    made = await open_terminal(server, id="remote")
    assert made.status_code == 201, made.text
    info = made.json()
    assert info["protocol"] == "ssh" and info["connection_id"] == "box" and info["alive"]
    t = await TermClient.connect(server.ws_url, "remote", ALICE)
    await t.send(b"echo I am $(whoami) $((6*7))\n")
    await t.read_until(f"I am {sshd.password_user} 42".encode())
    async with rest(server) as c:
        pinned = (await c.get(f"{CONNECTIONS}/box")).json()["host_key"]
    assert pinned.split()[:2] == sshd.host_key.split()[:2]  # trusted on first use, then pinned
    await t.send(b"exit 7\n")
    exit = await t.frame("exit")
    assert exit["exit_code"] == 7 and not exit.get("reason")
    await t.close()


async def test_a_key_login_with_the_size_asked_and_resizes_seen_remotely(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(
        server,
        sshd,
        username=sshd.key_user,
        auth={"private_key": sshd.private_key},
        host_key=sshd.host_key_fingerprint,
    )
    env = {"HEARTH_TEST_GREETING": "hi-there"}  # what the server's AcceptEnv takes
    made = await open_terminal(server, id="sized", rows=30, cols=100, env=env)
    assert made.status_code == 201, made.text
    t = await TermClient.connect(server.ws_url, "sized", ALICE)
    await t.send(b"echo got-$HEARTH_TEST_GREETING; stty size\n")
    await t.read_until(b"got-hi-there")
    await t.read_until(b"30 100")
    await t.send('{"type": "resize", "rows": 40, "cols": 132}')
    await t.send(b"stty size\n")
    await t.read_until(b"40 132")
    await t.close()


async def test_output_made_while_away_is_resumed_exactly(server: RunningServer, sshd: Sshd) -> None:
    await saved(server, sshd)
    assert (await open_terminal(server, id="away")).status_code == 201
    t = await TermClient.connect(server.ws_url, "away", ALICE)
    await t.send(b"sleep 0.5; seq 1 500; echo DO''NE\n")
    await t.read_until(b"sleep 0.5")
    seen = t.next_offset
    await t.close()  # cut before the output comes
    async with rest(server) as c:
        deadline = time.monotonic() + 15
        while b"DONE" not in (await c.get(f"{TERMINALS}/away/history")).content:
            assert time.monotonic() < deadline, "no output while away"
            await asyncio.sleep(0.05)
    again = await TermClient.connect(server.ws_url, "away", ALICE, reconnect="true", since=seen)
    text = (await again.read_until(b"DONE\r\n")).decode()
    lines = text.replace("\r", "\n").split("\n")  # bash's own "\x1b[?2004l\r" before "1" too
    numbers = [int(line) for line in lines if line.isdigit()]
    assert numbers == list(range(1, 501))  # nothing lost, nothing twice
    await again.close()


async def test_a_killed_server_ends_the_session_with_the_reason(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(server, sshd)
    assert (await open_terminal(server, id="doomed")).status_code == 201
    t = await TermClient.connect(server.ws_url, "doomed", ALICE)
    await t.send(b"echo up-$((1+1))\n")
    await t.read_until(b"up-2")
    sshd.kill_all()
    exit = await t.frame("exit")
    assert exit["reason"].startswith("connection lost"), exit
    async with rest(server) as c:
        info = (await c.get(f"{TERMINALS}/doomed")).json()
    assert not info["alive"] and info["protocol"] == "ssh"


async def failed_create(server: RunningServer) -> str:
    made = await open_terminal(server, id="never")
    assert made.status_code == 502, made.text
    async with rest(server) as c:
        assert (await c.get(f"{TERMINALS}/never")).status_code == 404  # nothing left behind
        assert (await c.get(TERMINALS)).json() == []
    detail: str = made.json()["detail"]
    return detail


async def test_a_wrong_password_is_a_502_that_says_so(server: RunningServer, sshd: Sshd) -> None:
    await saved(server, sshd, auth={"password": "not-" + sshd.password})
    detail = await failed_create(server)
    assert "Authentication failed" in detail and sshd.password not in detail


async def test_a_changed_host_key_is_refused_naming_both_fingerprints(
    server: RunningServer, sshd: Sshd
) -> None:
    old = sshd.host_key_fingerprint
    await saved(server, sshd, host_key=sshd.host_key)
    sshd.restart_with_new_host_key()
    detail = await failed_create(server)
    assert f"pinned {old}" in detail and f"got {sshd.host_key_fingerprint}" in detail


async def test_an_unknown_host_and_a_closed_port_are_502s(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(server, sshd, host="no-such-host.invalid")
    assert "Cannot resolve" in await failed_create(server)
    async with rest(server) as c:
        assert (
            await c.patch(f"{CONNECTIONS}/box", json={"host": "127.0.0.1", "port": 1})
        ).status_code == 200
    assert "Cannot reach" in await failed_create(server)


async def test_another_users_connection_and_sessions_look_missing(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(server, sshd)
    assert (await open_terminal(server, id="mine")).status_code == 201
    async with rest(server, BOB) as bob:
        made = await bob.post(TERMINALS, json={"connection_id": "box"})
        assert made.status_code == 404
        assert (await bob.get(f"{TERMINALS}/mine")).status_code == 404


async def test_connections_reach_only_the_allowed_hosts(make_server: Any, sshd: Sshd) -> None:
    server = make_server(connection_allowed_hosts=["*.example.com"])
    async with rest(server) as c:
        body = {"host": sshd.host, "port": sshd.port, "username": "u"}
        refused = await c.post(CONNECTIONS, json=body)
        assert refused.status_code == 400 and "connection_allowed_hosts" in refused.text
        assert (
            await c.post(CONNECTIONS, json={**body, "host": "db.example.com"})
        ).status_code == 201


async def probe_of(server: RunningServer) -> dict[str, Any]:
    async with rest(server) as c:
        r = await c.post(f"{CONNECTIONS}/box/test")
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def test_a_test_answers_the_key_and_whether_the_login_works(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(server, sshd)
    first = await probe_of(server)
    assert first["fingerprint"] == sshd.host_key_fingerprint
    assert first["host_key_matches"] is None and first["authenticated"] is True
    async with rest(server) as c:
        await c.patch(f"{CONNECTIONS}/box", json={"auth": {"password": "wrong"}})
        await c.patch(f"{CONNECTIONS}/box", json={"host_key": sshd.host_key_fingerprint})
    refused = await probe_of(server)
    assert refused["host_key_matches"] is True and refused["authenticated"] is False
    assert "Authentication failed" in refused["detail"]
    sshd.restart_with_new_host_key()
    changed = await probe_of(server)
    assert changed["host_key_matches"] is False and changed["authenticated"] is None
    assert changed["fingerprint"] == sshd.host_key_fingerprint


async def test_a_test_of_an_unreachable_server_is_a_502(server: RunningServer, sshd: Sshd) -> None:
    await saved(server, sshd, port=1)
    async with rest(server) as c:
        r = await c.post(f"{CONNECTIONS}/box/test")
    assert r.status_code == 502 and "Cannot reach" in r.json()["detail"]


CURSES = """
import curses, time
def main(w):
    w.addstr(0, 0, "TOP LEFT")
    w.addstr(23, 0, "READY")
    w.refresh()
    time.sleep(600)
curses.wrapper(main)
"""


async def test_the_screen_of_a_remote_full_screen_program_is_restored(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(server, sshd)
    made = await open_terminal(server, id="full", command=["/usr/bin/python3", "-c", CURSES])
    assert made.status_code == 201, made.text
    t = await TermClient.connect(server.ws_url, "full", ALICE, reconnect="true")
    await t.read_until(b"READY")
    await t.close()
    again = await TermClient.connect(
        server.ws_url, "full", ALICE, reconnect="true", restore="screen", rows=24, cols=80
    )
    screen = await again.frame("screen")
    assert screen["alternate"] is True
    assert "TOP LEFT" in screen["data"] and "READY" in screen["data"]
    await again.close()


COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.005; done"


async def test_a_restart_of_the_web_server_mid_stream_loses_and_repeats_nothing(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(server, sshd)
    made = await open_terminal(server, id="count", command=["sh", "-c", COUNTER])
    assert made.status_code == 201, made.text
    t = await TermClient.connect(server.ws_url, "count", ALICE, reconnect="true", since=0)
    await t.read_until(b"\r\n200\r\n")
    await t.close()
    end = t.next_offset
    await asyncio.to_thread(server.restart_web)  # the host keeps the SSH connection
    again = await TermClient.connect(server.ws_url, "count", ALICE, reconnect="true", since=end)
    await again.read_until(b"\r\n400\r\n")
    numbers = [int(n) for n in (bytes(t.output) + bytes(again.output)).decode().split()]
    assert numbers[: numbers.index(400) + 1] == list(range(1, 401))
    await again.close()


async def test_no_process_of_a_users_local_terminal_can_read_the_secrets(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(server, sshd)
    assert (await open_terminal(server, id="in-use")).status_code == 201  # the host holds them
    async with rest(server) as c:
        local = await c.post(TERMINALS, json={"id": "local", "command": ["/bin/sh"]})
    assert local.status_code == 201
    t = await TermClient.connect(server.ws_url, "local", ALICE)
    # the password reversed, so that it is in no command line of the search itself
    hidden = sshd.password[::-1]
    await t.send(f"printf %s '{hidden}' | rev > /tmp/pw; echo >> /tmp/pw\n".encode())
    data_dir = server.settings.data_dir
    await t.send(
        "n=$(grep -rslF -f /tmp/pw /proc/[0-9]*/environ /proc/[0-9]*/cmdline "
        f"{data_dir} 2>/dev/null | wc -l); echo result-$((n + 1000))\n".encode()
    )
    await t.read_until(b"result-1", timeout=30)
    await t.read_until(b"\r\n", timeout=5)
    found = bytes(t.output).decode().rsplit("result-", 1)[1].split()[0]
    assert found == "1000", f"{int(found) - 1000} places can read the password"
    await t.close()


async def test_the_operators_connection_serves_the_users_it_names_without_its_secret(
    make_server: Any, sshd: Sshd, tmp_path: Any
) -> None:
    key = tmp_path / "operator-key"
    key.write_text(sshd.private_key)
    key.chmod(0o600)
    shared = {
        "id": "shared",
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.key_user,
        "private_key_file": str(key),
        "host_key": sshd.host_key,
        "users": ["alice"],
    }
    server = make_server(connections=[shared])
    async with rest(server) as c:
        [listed] = (await c.get(CONNECTIONS)).json()
        assert listed["shared"] is True and listed["auth"] == "private_key"
        assert "BEGIN" not in (await c.get(f"{CONNECTIONS}/shared")).text
        assert (await c.patch(f"{CONNECTIONS}/shared", json={"name": "x"})).status_code == 409
        assert (await c.delete(f"{CONNECTIONS}/shared")).status_code == 409
        made = await c.post(TERMINALS, json={"id": "op", "connection_id": "shared"})
        assert made.status_code == 201, made.text
    t = await TermClient.connect(server.ws_url, "op", ALICE)
    await t.send(b"echo I am $(whoami)\n")
    await t.read_until(f"I am {sshd.key_user}".encode())
    await t.close()
    async with rest(server, BOB) as bob:
        assert (await bob.get(CONNECTIONS)).json() == []
        assert (await bob.get(f"{CONNECTIONS}/shared")).status_code == 404
        refused = await bob.post(TERMINALS, json={"connection_id": "shared"})
        assert refused.status_code == 404


async def test_a_key_in_openssh_format_with_a_passphrase_logs_in(
    server: RunningServer, sshd: Sshd, tmp_path: Any
) -> None:
    import subprocess

    key = tmp_path / "encrypted"
    key.write_text(sshd.private_key)
    key.chmod(0o600)
    argv = ["ssh-keygen", "-q", "-p", "-N", "pass phrase", "-f", str(key)]
    await asyncio.to_thread(subprocess.run, argv, check=True)
    assert "OPENSSH PRIVATE KEY" in key.read_text()  # ssh-keygen's own format, bcrypt-derived
    auth = {"private_key": key.read_text(), "passphrase": "pass phrase"}
    await saved(server, sshd, username=sshd.key_user, auth=auth)
    made = await open_terminal(server, id="locked", command=["echo", "unlocked"])
    assert made.status_code == 201, made.text


async def test_no_log_line_carries_a_secret(server: RunningServer, sshd: Sshd, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, asyncssh's too, at its most talkative
    await saved(server, sshd)
    assert (await open_terminal(server, id="logged")).status_code == 201
    async with rest(server) as c:
        await c.post(f"{CONNECTIONS}/box/test")
        await c.patch(f"{CONNECTIONS}/box", json={"auth": {"password": "wrong-" + sshd.password}})
        assert (await c.post(TERMINALS, json={"connection_id": "box"})).status_code == 502
    assert "box" in caplog.text  # the logs were captured
    assert sshd.password not in caplog.text


async def test_keepalives_end_a_session_whose_server_stopped_answering(
    make_server: Any, sshd: Sshd
) -> None:
    server = make_server(connection_keepalive_interval=0.3)
    await saved(server, sshd)
    assert (await open_terminal(server, id="frozen")).status_code == 201
    t = await TermClient.connect(server.ws_url, "frozen", ALICE)
    await t.send(b"echo up-$((2+2))\n")
    await t.read_until(b"up-4")
    frozen = sshd.connection_processes()
    for p in frozen:  # the link stays up, nothing answers on it
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGSTOP)
    try:
        exit = await t.frame("exit", timeout=15)
    finally:
        for p in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
    assert exit["reason"] == "connection lost: Server not responding to keepalive", exit
    async with rest(server) as c:
        info = (await c.get(f"{TERMINALS}/frozen")).json()
    assert not info["alive"] and info["exit_reason"] == exit["reason"]


async def test_a_connection_through_a_jump_host_opens_there(
    server: RunningServer, sshd: Sshd
) -> None:
    await saved(
        server,
        sshd,
        id="bastion",
        username=sshd.key_user,
        auth={"private_key": sshd.private_key},
    )  # its key pinned at first use, like any connection's
    await saved(server, sshd, id="box", jump="bastion")
    async with rest(server) as c:
        assert (await c.get(f"{CONNECTIONS}/box")).json()["jump"] == "bastion"
        body = {"host": sshd.host, "port": sshd.port, "username": sshd.password_user}
        chained = await c.post(CONNECTIONS, json={**body, "id": "x", "jump": "box"})
        assert chained.status_code == 400 and "one jump host" in chained.text
        assert (await c.delete(f"{CONNECTIONS}/bastion")).status_code == 409  # box needs it
        tested = (await c.post(f"{CONNECTIONS}/box/test")).json()
        assert tested["authenticated"] is True
    logged = len(sshd.log())
    made = await open_terminal(server, id="far")
    assert made.status_code == 201, made.text
    t = await TermClient.connect(server.ws_url, "far", ALICE)
    await t.send(b"echo I am $(whoami)\n")
    await t.read_until(f"I am {sshd.password_user}".encode())
    assert "direct-tcpip" in sshd.log()[logged:]  # the bastion forwarded it
    async with rest(server) as c:
        pinned = (await c.get(f"{CONNECTIONS}/bastion")).json()["host_key"]
    assert pinned.split()[:2] == sshd.host_key.split()[:2]
    await t.close()


def BODY_OF(sshd: Sshd) -> dict[str, Any]:
    return {"host": sshd.host, "port": sshd.port, "username": sshd.password_user}
