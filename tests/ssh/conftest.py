"""Fixtures of the SSH tests: a real sshd (tests/ssh/sshd.py), and asyncssh imported quietly."""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

from tests.ssh.sshd import sshd, sshd_server  # noqa: F401  (fixtures)

with warnings.catch_warnings():
    # asyncssh 2.24 names cryptography's DSA types at import, which cryptography 51 deprecates
    # (a warning, an error under the suite's filterwarnings)
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import asyncssh  # noqa: F401
