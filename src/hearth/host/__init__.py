"""The session host (SPEC §8): the process per data directory that owns every session and serves
the calls of :mod:`hearth.contract` to web tiers on a Unix socket. The web tier's side of that
socket is :mod:`hearth.server.host_client`."""
