"""The session host (SPEC §8): a process per data directory that owns every session; the web
tier reaches it over a Unix socket."""
