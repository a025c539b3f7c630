"""Saved connections to other machines (SPEC §11): what a user keeps to open terminals on them.
Held by the session host; their secrets sealed at rest (:mod:`hearth.connections.sealed`)."""
