"""``unpack``: the session host's reading of a kernel's messages, checked against jupyter_client's
own ``Session.deserialize`` (which it replaces on the hot path)."""

from __future__ import annotations

import pytest
from jupyter_client.session import Session

from hearth.kernels.kernel import unpack


def _signed(session: Session) -> list[bytes]:
    parent = session.msg("execute_request", {"code": "1+1"})
    msg = session.msg("execute_result", {"data": {"text/plain": "2"}}, parent=parent["header"])
    wire = session.serialize(msg)
    return [*wire[wire.index(b"<IDS|MSG>") + 1 :], b"\x00buffer"]


def test_it_reads_what_deserialize_reads_but_the_dates() -> None:
    session = Session(key=b"k3y")
    parts = _signed(session)
    ours, theirs = unpack(session, parts), session.deserialize(parts)
    for key in ("msg_id", "msg_type", "metadata", "content"):
        assert ours[key] == theirs[key]
    assert ours["parent_header"]["msg_id"] == theirs["parent_header"]["msg_id"]
    assert ours["header"]["date"] == theirs["header"]["date"].isoformat().replace("+00:00", "Z")
    assert [bytes(b) for b in ours["buffers"]] == [b"\x00buffer"]


def test_a_message_signed_with_another_key_is_refused() -> None:
    parts = _signed(Session(key=b"not-the-kernels"))
    with pytest.raises(ValueError, match="signature"):
        unpack(Session(key=b"k3y"), parts)


def test_a_short_message_is_refused() -> None:
    with pytest.raises(ValueError, match="parts"):
        unpack(Session(key=b"k3y"), [b"sig", b"{}"])
