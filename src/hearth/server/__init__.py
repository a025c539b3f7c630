"""The web tier: authentication, routes, websocket framing. Knows the session core only by its
async interface; nothing of HTTP crosses into ``hearth.terminals`` or ``hearth.kernels``."""
