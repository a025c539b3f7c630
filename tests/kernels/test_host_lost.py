"""Kernel sessions of a session host that was killed (SPEC §8): listed ``dead`` with
``closed_reason: "host_lost"``, their files kept and readable; created again, a new kernel runs in
the same directory; deleted, they are gone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from tests.served import HEARTH

TOKEN = "tok-kim-44"
H = {"Authorization": f"Bearer {TOKEN}"}
ENV = {"HEARTH_TOKENS": json.dumps({TOKEN: "kim"})}


def run(c: httpx.Client, code: str) -> dict:  # type: ignore[type-arg]
    r = c.post("/api/v1/sessions/k1/execute", json={"code": code}, timeout=60)
    return {"status_code": r.status_code, **r.json()}


def test_a_kernel_session_of_a_killed_host_keeps_its_files_and_comes_back(
    serve, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    served = serve("--data-dir", str(tmp_path), env=ENV)
    with httpx.Client(base_url=served.base, headers=H, timeout=60) as c:
        assert c.post("/api/v1/sessions", json={"session_id": "k1"}).status_code == 201
        assert c.put("/api/v1/sessions/k1/files/notes.txt", content=b"kept").status_code in (
            200,
            201,
        )
        assert run(c, "x = 41")["status"] == "ok"
    served.kill_all()

    again = serve("--data-dir", str(tmp_path), env=ENV)
    with httpx.Client(base_url=again.base, headers=H, timeout=60) as c:
        info = c.get("/api/v1/sessions/k1").json()
        assert info["status"] == "dead" and info["closed_reason"] == "host_lost"
        assert [s["session_id"] for s in c.get("/api/v1/sessions").json()] == ["k1"]
        assert [f["path"] for f in c.get("/api/v1/sessions/k1/files").json()] == ["notes.txt"]
        assert c.get("/api/v1/sessions/k1/files/notes.txt").content == b"kept"
        ls = subprocess.run(
            [*HEARTH, "ls", "--url", again.base, "--token", TOKEN],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "lost when the server stopped (files kept)" in ls.stdout
        refused = run(c, "x")
        assert refused["status_code"] == 409 and "POST /api/v1/sessions" in json.dumps(refused)

        r = c.post("/api/v1/sessions", json={"session_id": "k1"})
        assert r.status_code == 201 and r.json()["status"] != "dead"
        assert "closed_reason" not in r.json()
        answer = run(c, "print(open('notes.txt').read()); print('x' in dir())")
        assert answer["status"] == "ok"
        text = "".join(o.get("text", "") for o in answer["outputs"])
        assert text.split() == ["kept", "False"]  # its files, in a new kernel

        assert c.delete("/api/v1/sessions/k1").status_code == 204
        assert c.get("/api/v1/sessions/k1").status_code == 404


def test_a_revived_session_takes_only_its_own_regular_files(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Its kept files are moved into the new kernel's directory by the host, as root: a symlink
    there must not lead the host to a file the session can't read, nor a FIFO make it wait."""
    secret = tmp_path / "root-only.txt"
    secret.write_text("root's secret")
    secret.chmod(0o600)
    data = tmp_path / "data"
    served = serve("--data-dir", str(data), env=ENV)
    with httpx.Client(base_url=served.base, headers=H, timeout=60) as c:
        assert c.post("/api/v1/sessions", json={"session_id": "k1"}).status_code == 201
        code = (
            f"import os; os.symlink({str(secret)!r}, 'link'); os.mkfifo('fifo');"
            " open('run.sh', 'w').write('echo hi'); os.chmod('run.sh', 0o755)"
        )
        assert run(c, code)["status"] == "ok"
    served.kill_all()

    again = serve("--data-dir", str(data), env=ENV)
    with httpx.Client(base_url=again.base, headers=H, timeout=60) as c:
        r = c.post("/api/v1/sessions", json={"session_id": "k1"})
        assert r.status_code == 201, r.text
        answer = run(
            c,
            "import os, stat\n"
            "print(sorted(os.listdir('.')))\n"
            "print(oct(os.stat('run.sh').st_mode & 0o777))\n"
            "print(os.path.islink('link') or not os.path.exists('link') or open('link').read())",
        )
        assert answer["status"] == "ok", answer
        lines = "".join(o.get("text", "") for o in answer["outputs"]).split("\n")
        assert "root's secret" not in "".join(lines)
        assert "run.sh" in lines[0] and lines[1] == "0o755", lines
        assert lines[2] == "True", lines
