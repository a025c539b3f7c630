"""`hearth serve` as a user runs it: a real process, its printed URL, its logs, its shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import pids_of
from tests.served import HEARTH


def test_generated_token_is_printed_stored_and_reused(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    first = serve("--data-dir", str(data))
    match = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", first.url_line)
    assert match, first.url_line
    token = match.group(2)
    assert (data / "token").read_text().strip() == token
    assert oct((data / "token").stat().st_mode & 0o777) == "0o600"
    with httpx.Client(base_url=first.base) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        r = c.get("/api/v1/terminal/sessions", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    first.stop()
    second = serve("--data-dir", str(data))
    assert f"token={token}" in second.url_line


def test_configured_tokens_are_not_printed(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    served = serve("--data-dir", str(tmp_path), env={"HEARTH_TOKENS": '{"tok-carol-3": "carol"}'})
    assert "token" not in served.url_line
    assert not (tmp_path / "token").exists()


def test_flag_beats_env_beats_file(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "hearth.toml"
    config.write_text(
        'session_timeout = 11\nmax_terminals_per_user = 1\ntokens = {"tok-file-11" = "filer"}\n'
    )
    served = serve(
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "d"),
        env={"HEARTH_SESSION_TIMEOUT": "22"},
    )
    with httpx.Client(base_url=served.base, headers={"Authorization": "Bearer tok-file-11"}) as c:
        created = c.post("/api/v1/terminal/sessions", json={"command": ["/bin/sh"]}).json()
        assert created["expires_at"] - created["last_activity"] == pytest.approx(22)
        assert c.post("/api/v1/terminal/sessions", json={}).status_code == 429  # from the file
    assert f":{served.port}/" in served.url_line  # the flag won over everything


def test_bad_settings_fail_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [*HEARTH, "serve", "--data-dir", str(tmp_path), "--config", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "none.toml" in result.stderr
    result = subprocess.run(
        [*HEARTH, "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HEARTH_MAX_TERMINALS": "lots"},
    )
    assert result.returncode == 2
    assert "max_terminals" in result.stderr
    result = subprocess.run(  # JSON that isn't: pydantic-settings' SettingsError
        [*HEARTH, "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HEARTH_TOKENS": "{not json"},
    )
    assert result.returncode == 2, result.stderr
    assert "HEARTH_TOKENS" in result.stderr or "tokens" in result.stderr
    assert "Traceback" not in result.stderr
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("port = = 1\n")
    result = subprocess.run(
        [*HEARTH, "serve", "--data-dir", str(tmp_path), "--config", str(bad_toml)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "bad.toml" in result.stderr and "Traceback" not in result.stderr


def test_tokens_never_reach_the_logs(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret = "tok-very-secret-1"
    served = serve(
        "--data-dir",
        str(tmp_path),
        env={"HEARTH_TOKENS": json.dumps({secret: "dave"}), "HEARTH_LOG_LEVEL": "debug"},
    )
    with httpx.Client(base_url=served.base) as c:
        c.get("/api/v1/terminal/sessions", params={"token": secret})
        c.get("/api/v1/terminal/sessions", headers={"Authorization": f"Bearer {secret}"})
        c.get("/login", params={"token": secret})
        c.get("/api/v1/terminal/sessions", params={"token": secret + "x"})
        c.post(
            "/api/v1/terminal/sessions",
            params={"token": secret},
            json={"command": ["/bin/sh", "-c", "exit 0"]},
        )
    err = served.stop()
    assert err, "debug logging wrote nothing; the check would be vacuous"
    assert secret not in err


def test_a_stopped_server_leaves_terminals_to_the_host_and_a_stopped_host_hangs_them_up(
    serve, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    served = serve("--data-dir", str(tmp_path), env={"HEARTH_TOKENS": '{"tok-erin-55": "erin"}'})
    with httpx.Client(base_url=served.base, headers={"Authorization": "Bearer tok-erin-55"}) as c:
        script = "sleep 3019 & wait"  # found by its command line: pids inside a sandbox differ
        made = c.post("/api/v1/terminal/sessions", json={"command": ["/bin/sh", "-c", script]})
        assert made.status_code == 201
    deadline = time.monotonic() + 10
    while not (pids := pids_of(b"sleep\x003019\x00")):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = pids[0]
    host = served.host_pid()
    err = served.stop()
    assert served.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught
    assert "Traceback" not in err
    os.kill(pid, 0)  # the session goes on in the session host
    os.kill(host, signal.SIGTERM)  # as a service manager stops it
    deadline = time.monotonic() + 10
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "a terminal's child outlived the session host"
        time.sleep(0.02)


def test_several_users_without_a_sandbox_refuse_to_start_naming_both_fixes(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env["PATH"] = str(tmp_path)  # no bwrap on it
    env["HEARTH_TOKENS"] = '{"tok-alice-1": "alice", "tok-bob-22": "bob"}'
    done = subprocess.run(
        [*HEARTH, "serve", "--port", "0", "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "bubblewrap" in done.stderr and 'sandbox = "none"' in done.stderr
    assert "Traceback" not in done.stderr


def test_healthz_says_which_sandbox_and_limits_are_in_force(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    served = serve("--data-dir", str(tmp_path), env={"HEARTH_SANDBOX": "none"})
    with httpx.Client(base_url=served.base) as c:
        health = c.get("/healthz").json()
    assert health["sandbox"] == "none"
    assert health["limits"] in ("cgroup2", "cgroup1", "rlimit")
    assert health["seccomp"] == "off"  # no bwrap to load a filter


def test_hearths_loop_runs_off_the_main_thread_too() -> None:
    """The tests run the session host in a thread: the task dump's signal handler (SIGUSR1)
    belongs to the main thread only, and must not stop a loop elsewhere from running."""
    import asyncio
    import threading

    from hearth import loops

    results: list[object] = []

    async def main() -> int:
        await asyncio.sleep(0)
        return 7

    thread = threading.Thread(target=lambda: results.append(loops.run(main())))
    thread.start()
    thread.join(30)
    assert results == [7]
