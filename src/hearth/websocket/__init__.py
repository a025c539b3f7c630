"""Websockets as both processes serve them: the web tier, and the session host once a terminal
websocket is handed to it (:mod:`hearth.websocket.protocol`)."""
