"""asyncssh, imported without the DSA deprecation warning its import raises through cryptography
(DSA keys are still read where a server offers them). Import asyncssh from here only."""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

__all__ = ["asyncssh"]
