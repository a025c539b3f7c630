"""What crosses between the web tier and the session host (SPEC §8): the calls, the values they
carry, and the socket's frames and streams. Both processes import it; it imports neither."""
