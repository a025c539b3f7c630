"""Saved connections over the API (SPEC §11): owner-only, secrets in and never out, sealed at
rest with a key kept apart from the store."""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.conftest import ALICE, BOB, RunningServer

API = "/api/v1/connections"
PASSWORD = "pa55-Wörd-that-must-never-show"
KEY = (
    Ed25519PrivateKey.generate()
    .private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    .decode()
)
KEY_BODY = KEY.splitlines()[1]  # what must never come back


def client(server: RunningServer, token: str = ALICE) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})


def make(c: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"host": "db.example", "username": "ops", "auth": {"password": PASSWORD}, **fields}
    r = c.post(API, json=body)
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


def test_a_connection_is_created_listed_changed_and_deleted(server: RunningServer) -> None:
    with client(server) as c:
        made = make(c, id="db", port=2222)
        assert made["id"] == "db" and made["name"] == "ops@db.example"
        assert made["protocol"] == "ssh" and made["port"] == 2222
        assert made["auth"] == "password" and made["host_key"] is None
        assert [x["id"] for x in c.get(API).json()] == ["db"]
        changed = c.patch(f"{API}/db", json={"name": "the database", "auth": {"private_key": KEY}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["name"] == "the database" and changed.json()["auth"] == "private_key"
        assert c.get(f"{API}/db").json() == changed.json()
        assert c.post(API, json={"id": "db", "host": "h", "username": "u"}).status_code == 409
        assert c.delete(f"{API}/db").status_code == 204
        assert c.get(f"{API}/db").status_code == 404
        assert c.get(API).json() == []


def test_another_users_connection_looks_missing(server: RunningServer) -> None:
    with client(server) as alice, client(server, BOB) as bob:
        make(alice, id="mine")
        assert bob.get(f"{API}/mine").status_code == 404
        assert bob.patch(f"{API}/mine", json={"name": "x"}).status_code == 404
        assert bob.delete(f"{API}/mine").status_code == 404
        assert bob.get(API).json() == []
        assert alice.get(f"{API}/mine").status_code == 200


def test_a_new_host_unpins_the_old_key_unless_one_is_given(server: RunningServer) -> None:
    with client(server) as c:
        make(c, id="k", host_key="SHA256:abc")
        assert c.patch(f"{API}/k", json={"name": "n"}).json()["host_key"] == "SHA256:abc"
        assert c.patch(f"{API}/k", json={"host": "other.example"}).json()["host_key"] is None
        moved = c.patch(f"{API}/k", json={"port": 23, "host_key": "SHA256:def"}).json()
        assert moved["host_key"] == "SHA256:def"


@pytest.mark.parametrize(
    "body",
    [
        {"host": "h", "username": "u", "auth": {"password": 12345678}},  # wrong type
        {"host": "h", "username": "u", "auth": {"password": PASSWORD, "extra": PASSWORD}},
        {"host": "bad host", "username": "u", "auth": {"password": PASSWORD}},
        {"host": "h", "username": "u", "port": 0, "auth": {"private_key": KEY}},
    ],
    ids=["wrong-type", "unknown-field", "bad-host", "bad-port"],
)
def test_a_refused_body_names_the_field_and_repeats_no_secret(
    server: RunningServer, body: dict[str, Any]
) -> None:
    with client(server) as c:
        r = c.post(API, json=body)
        assert r.status_code == 422
        assert PASSWORD not in r.text and KEY_BODY not in r.text and "12345678" not in r.text
        assert r.json()["detail"][0]["loc"][0] == "body"


def test_secrets_are_sealed_in_the_store_with_a_key_kept_apart(server: RunningServer) -> None:
    with client(server) as c:
        make(c, id="sealed")
        make(c, id="keyed", auth={"private_key": KEY, "passphrase": PASSWORD})
    data_dir = server.settings.data_dir
    key = data_dir / "connections.key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    with sqlite3.connect(data_dir / "hearth.sqlite3") as db:
        rows = db.execute("SELECT data FROM sessions WHERE kind = 'connection'").fetchall()
    assert len(rows) == 2
    for (data,) in rows:
        assert PASSWORD not in data and KEY_BODY not in data and "sealed" in data
    # what the SSH client will get, in the host only
    _, auth = server.call(lambda: server.core.connections.credentials("alice", "keyed"))
    assert auth.private_key == KEY and auth.passphrase == PASSWORD


def test_a_sealed_secret_does_not_open_in_another_users_row(server: RunningServer) -> None:
    with client(server) as alice, client(server, BOB) as bob:
        make(alice, id="a")
        make(bob, id="a", auth={"password": "bobs"})
    store = server.core.connections._store
    alices = store.get("connection", "alice", "a")
    bobs = store.get("connection", "bob", "a")
    store.put("connection", "bob", "a", {**bobs, "sealed": alices["sealed"]})
    with client(server, BOB) as bob:
        assert bob.get(f"{API}/a").status_code == 200  # the connection is still there
    with pytest.raises(Exception, match="can't be read"):
        server.call(lambda: server.core.connections.credentials("bob", "a"))


def test_a_change_that_clears_a_kept_field_is_refused(server: RunningServer) -> None:
    with client(server) as c:
        make(c, id="n")
        for field in ("name", "host", "port", "username"):
            r = c.patch(f"{API}/n", json={field: None})
            assert r.status_code == 422, (field, r.text)
        cleared = c.patch(f"{API}/n", json={"auth": None, "host_key": None})
        assert cleared.status_code == 200 and cleared.json()["auth"] == "none"


def test_a_key_that_cant_be_read_is_refused_at_once_without_repeating_it(
    server: RunningServer,
) -> None:
    broken = KEY.replace(KEY_BODY, KEY_BODY[::-1])
    with client(server) as c:
        r = c.post(API, json={"host": "h", "username": "u", "auth": {"private_key": broken}})
        assert r.status_code == 400 and "can't be read" in r.text
        assert KEY_BODY[::-1] not in r.text
        assert c.get(API).json() == []
